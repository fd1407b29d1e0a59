//! The v0.3 gRPC binding: A2A v0.3's service (`a2a.v1.A2AService`) on the
//! gRPC port beside v1.0's (`lf.a2a.v1.A2AService`), with the same
//! authentication, limits and tracing, served through the same v0.3 layer
//! as v0.3 JSON-RPC and HTTP+JSON ([`crate::compat::dispatch`]).

use std::pin::Pin;

use serde_json::{Value, json};
use switchyard_engine::Caller;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::compat;
use crate::compat_proto::{self as proto, SERVICE, pb};
use crate::error::ApiError;
use crate::events::StreamItem;
use crate::grpc_call::{span_for, traced};
use crate::reply::Reply;
use crate::state::AppState;
use crate::validate::Intake;

type Streamed = Pin<Box<dyn Stream<Item = Result<pb::StreamResponse, Status>> + Send + 'static>>;

/// The v0.3 service over one process's [`AppState`].
#[derive(Debug, Clone)]
pub struct V03Binding {
    state: AppState,
}

impl V03Binding {
    /// The tonic service, its message size bounded like a JSON body.
    pub fn service(state: AppState) -> pb::a2a_service_server::A2aServiceServer<V03Binding> {
        let limit = state.handler.config().max_body_bytes;
        pb::a2a_service_server::A2aServiceServer::new(V03Binding { state }).max_decoding_message_size(limit)
    }

    /// Who calls: the credential valid and within its rate; v0.3 has no
    /// tenants in its requests. With the headers, for the idempotency key
    /// and trace context.
    async fn caller<T>(&self, request: &Request<T>, task: Option<&str>) -> Result<(Caller, Intake), ApiError> {
        let headers = request.metadata().clone().into_headers();
        let principal = self.state.auth.authenticate(&headers).await.inspect_err(|e| {
            if matches!(e, ApiError::Unauthenticated(_)) {
                tracing::warn!(target: "switchyard::audit", action = "auth.refused", reason = %e, service = SERVICE);
            }
        })?;
        self.state.auth.admit(&principal)?;
        Ok((principal.caller(None, task)?, Intake::from_headers(&headers)))
    }

    async fn call(&self, caller: &Caller, method: &str, params: Value, intake: Intake) -> Result<Value, ApiError> {
        match Box::pin(compat::dispatch(&self.state.handler, caller, method, params, intake)).await? {
            Reply::Value(value) => Ok(value),
            Reply::Stream(_) => Err(ApiError::Internal),
        }
    }

    async fn stream(&self, caller: &Caller, method: &str, params: Value, intake: Intake) -> Result<Streamed, ApiError> {
        match Box::pin(compat::dispatch(&self.state.handler, caller, method, params, intake)).await? {
            Reply::Stream(items) => Ok(streamed(items)),
            Reply::Value(_) => Err(ApiError::Internal),
        }
    }

    async fn send_params(&self, request: Request<pb::SendMessageRequest>) -> Result<(Caller, Value, Intake), ApiError> {
        let task = request.get_ref().request.as_ref().map(|m| m.task_id.clone()).filter(|t| !t.is_empty());
        let (caller, intake) = self.caller(&request, task.as_deref()).await?;
        let params = proto::send_params(request.into_inner())?;
        Ok((caller, serde_json::to_value(params).map_err(|_| ApiError::Internal)?, intake))
    }
}

/// A task stream as v0.3 `StreamResponse`s; an error ends it with its status.
fn streamed(items: tokio_stream::wrappers::ReceiverStream<StreamItem>) -> Streamed {
    Box::pin(items.map(|item| match compat::stream_item_to_v03(&item).and_then(proto::result) {
        Ok(event) => Ok(proto::stream_response_to_pb(&event)),
        Err(e) => Err(e.to_grpc()),
    }))
}

/// One server span per call, as on the v1.0 service.
fn span<T>(request: &Request<T>, method: &str) -> tracing::Span {
    span_for(request, SERVICE, method)
}

#[tonic::async_trait]
impl pb::a2a_service_server::A2aService for V03Binding {
    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        traced(span(&request, "SendMessage"), async {
            let (caller, params, intake) = self.send_params(request).await?;
            let answer = proto::result(self.call(&caller, "message/send", params, intake).await?)?;
            Ok(proto::send_response_to_pb(&answer))
        })
        .await
    }

    type SendStreamingMessageStream = Streamed;

    async fn send_streaming_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<Streamed>, Status> {
        traced(span(&request, "SendStreamingMessage"), async {
            let (caller, params, intake) = self.send_params(request).await?;
            self.stream(&caller, "message/stream", params, intake).await
        })
        .await
    }

    async fn get_task(&self, request: Request<pb::GetTaskRequest>) -> Result<Response<pb::Task>, Status> {
        traced(span(&request, "GetTask"), async {
            let id = proto::task_name(&request.get_ref().name, "name")?;
            let (caller, intake) = self.caller(&request, Some(&id)).await?;
            let mut params = json!({ "id": id });
            let history = request.get_ref().history_length;
            if history != 0 {
                params["historyLength"] = history.into();
            }
            proto::task_result(self.call(&caller, "tasks/get", params, intake).await?)
        })
        .await
    }

    async fn cancel_task(&self, request: Request<pb::CancelTaskRequest>) -> Result<Response<pb::Task>, Status> {
        traced(span(&request, "CancelTask"), async {
            let id = proto::task_name(&request.get_ref().name, "name")?;
            let (caller, intake) = self.caller(&request, Some(&id)).await?;
            proto::task_result(self.call(&caller, "tasks/cancel", json!({ "id": id }), intake).await?)
        })
        .await
    }

    type TaskSubscriptionStream = Streamed;

    async fn task_subscription(
        &self,
        request: Request<pb::TaskSubscriptionRequest>,
    ) -> Result<Response<Streamed>, Status> {
        traced(span(&request, "TaskSubscription"), async {
            let id = proto::task_name(&request.get_ref().name, "name")?;
            let (caller, intake) = self.caller(&request, Some(&id)).await?;
            self.stream(&caller, "tasks/resubscribe", json!({ "id": id }), intake).await
        })
        .await
    }

    async fn create_task_push_notification_config(
        &self,
        request: Request<pb::CreateTaskPushNotificationConfigRequest>,
    ) -> Result<Response<pb::TaskPushNotificationConfig>, Status> {
        traced(span(&request, "CreateTaskPushNotificationConfig"), async {
            let task = proto::task_name(&request.get_ref().parent, "parent")?;
            let (caller, intake) = self.caller(&request, Some(&task)).await?;
            let params = proto::set_push_params(&task, request.into_inner())?;
            proto::push_config_result(self.call(&caller, "tasks/pushNotificationConfig/set", params, intake).await?)
        })
        .await
    }

    async fn get_task_push_notification_config(
        &self,
        request: Request<pb::GetTaskPushNotificationConfigRequest>,
    ) -> Result<Response<pb::TaskPushNotificationConfig>, Status> {
        traced(span(&request, "GetTaskPushNotificationConfig"), async {
            let (task, config) = proto::push_config_name(&request.get_ref().name, "name")?;
            let (caller, intake) = self.caller(&request, Some(&task)).await?;
            let params = json!({ "id": task, "pushNotificationConfigId": config });
            proto::push_config_result(self.call(&caller, "tasks/pushNotificationConfig/get", params, intake).await?)
        })
        .await
    }

    async fn list_task_push_notification_config(
        &self,
        request: Request<pb::ListTaskPushNotificationConfigRequest>,
    ) -> Result<Response<pb::ListTaskPushNotificationConfigResponse>, Status> {
        traced(span(&request, "ListTaskPushNotificationConfig"), async {
            let task = proto::task_name(&request.get_ref().parent, "parent")?;
            let (caller, intake) = self.caller(&request, Some(&task)).await?;
            let listed = self.call(&caller, "tasks/pushNotificationConfig/list", json!({ "id": task }), intake).await?;
            proto::push_configs_result(listed)
        })
        .await
    }

    async fn get_agent_card(
        &self,
        request: Request<pb::GetAgentCardRequest>,
    ) -> Result<Response<pb::AgentCard>, Status> {
        traced(span(&request, "GetAgentCard"), async {
            let (caller, _) = self.caller(&request, None).await?;
            let card = self.state.handler.extended_card(&caller).await?;
            let config = self.state.handler.config();
            Ok(proto::card_to_pb(&card, &config.public_url, &crate::card::v03_interfaces(config)))
        })
        .await
    }

    async fn delete_task_push_notification_config(
        &self,
        request: Request<pb::DeleteTaskPushNotificationConfigRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        traced(span(&request, "DeleteTaskPushNotificationConfig"), async {
            let (task, config) = proto::push_config_name(&request.get_ref().name, "name")?;
            let (caller, intake) = self.caller(&request, Some(&task)).await?;
            let params = json!({ "id": task, "pushNotificationConfigId": config });
            self.call(&caller, "tasks/pushNotificationConfig/delete", params, intake).await?;
            Ok(pbjson_types::Empty {})
        })
        .await
    }
}
