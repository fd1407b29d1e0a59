//! Switchyard's own Agent Card, served at the well-known paths.

use a2a::{AgentCapabilities, AgentCard, AgentInterface, AgentSkill};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use switchyard_engine::plan::PlanSpec;

use crate::config::ApiConfig;

/// The card as served: its JSON and an ETag derived from it.
#[derive(Debug, Clone)]
pub struct CardDocument {
    body: String,
    etag: String,
}

impl CardDocument {
    /// Builds the card for this deployment, offering its plans as skills.
    pub fn build(config: &ApiConfig, plans: &[PlanSpec]) -> Self {
        let mut card = card_json(config, plans);
        if let Some(signer) = &config.card_signer
            && let Err(error) = signer.sign(&mut card)
        {
            // Checked at start (a key that cannot sign stops the process),
            // so this is not expected; an unsigned card is still a card.
            tracing::error!(%error, "could not sign the agent card");
        }
        let body = card.to_string();
        // FNV-1a of the body: the same card gives the same tag on every replica.
        let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        CardDocument { body, etag: format!("\"{hash:016x}\"") }
    }

    /// The card's JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The HTTP answer, honouring `If-None-Match`.
    pub fn respond(&self, headers: &HeaderMap) -> Response {
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == self.etag || t.trim() == "*"));
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(header::CONTENT_TYPE, "application/json")], self.body.clone()).into_response()
        };
        let h = response.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        if let Ok(tag) = HeaderValue::from_str(&self.etag) {
            h.insert(header::ETAG, tag);
        }
        response
    }
}

fn interface(url: &str, binding: &str, version: &str) -> Value {
    json!({ "url": url, "protocolBinding": binding, "protocolVersion": version })
}

/// Where v0.3 clients reach this server, by transport: JSON-RPC at the
/// root, HTTP+JSON under `/v1`, gRPC (`a2a.v1.A2AService`) on the gRPC
/// port when there is one.
pub fn v03_interfaces(config: &ApiConfig) -> Vec<(String, &'static str)> {
    let url = &config.public_url;
    let mut interfaces = vec![(url.clone(), "JSONRPC"), (url.clone(), "HTTP+JSON")];
    if let Some(grpc) = &config.grpc_url {
        interfaces.push((grpc.clone(), "GRPC"));
    }
    interfaces
}

/// The v1 card, plus the top-level fields a v0.3 client reads (v1 clients
/// ignore them): one card both generations can use.
fn card_json(config: &ApiConfig, plans: &[PlanSpec]) -> Value {
    let url = &config.public_url;
    let route = AgentSkill {
        id: "route".into(),
        name: "Route to a remote agent".into(),
        description: "Delegates the task to a registered A2A agent chosen by skill or by name \
                      (message metadata `switchyard.agent` / `switchyard.skill`), or runs an ad hoc fan-out \
                      or pipeline (`switchyard.fanout` / `switchyard.pipeline`)."
            .into(),
        tags: vec!["broker".into(), "delegation".into()],
        examples: None,
        input_modes: None,
        output_modes: None,
        security_requirements: None,
    };
    let skills = std::iter::once(route).chain(plans.iter().map(plan_skill)).collect();
    let card = AgentCard {
        name: "Switchyard".into(),
        description: "A durable A2A task broker: every task is checkpointed before it is acknowledged and \
                      carried to a remote agent, surviving crashes of the broker's own processes."
            .into(),
        version: env!("CARGO_PKG_VERSION").into(),
        supported_interfaces: Vec::<AgentInterface>::new(),
        capabilities: AgentCapabilities {
            streaming: Some(true),
            push_notifications: Some(true),
            extensions: None,
            extended_agent_card: Some(true),
        },
        default_input_modes: vec!["text/plain".into(), "application/json".into()],
        default_output_modes: vec!["text/plain".into(), "application/json".into()],
        skills,
        provider: None,
        documentation_url: None,
        icon_url: None,
        security_schemes: None,
        security_requirements: None,
        signatures: None,
    };
    let mut value = serde_json::to_value(card).unwrap_or_else(|_| json!({}));
    let mut interfaces = vec![interface(url, "JSONRPC", "1.0"), interface(url, "HTTP+JSON", "1.0")];
    if let Some(grpc) = &config.grpc_url {
        interfaces.push(interface(grpc, "GRPC", "1.0"));
    }
    let v03 = v03_interfaces(config);
    interfaces.extend(v03.iter().map(|(url, binding)| interface(url, binding, "0.3")));
    value["supportedInterfaces"] = Value::Array(interfaces);
    // v0.3 fields, derived from the 0.3 interfaces.
    value["url"] = json!(url);
    value["protocolVersion"] = json!("0.3.0");
    value["preferredTransport"] = json!("JSONRPC");
    value["additionalInterfaces"] =
        v03.iter().map(|(url, transport)| json!({ "url": url, "transport": transport })).collect();
    value["supportsAuthenticatedExtendedCard"] = json!(true);
    declare_security(&mut value, config);
    value
}

/// The schemes every binding accepts, in both generations' shapes side by
/// side (v1 `securitySchemes` members plus OpenAPI's `type`/`in`/`name`;
/// `securityRequirements` for v1, `security` for v0.3). Anonymous access
/// shows as an empty requirement: credentials optional.
fn declare_security(card: &mut Value, config: &ApiConfig) {
    let mut schemes = json!({
        "apiKey": {
            "apiKeySecurityScheme": {
                "location": "header",
                "name": "X-API-Key",
                "description": "An API key from `switchyard keys create`.",
            },
            "type": "apiKey", "in": "header", "name": "X-API-Key",
        },
    });
    let mut names = vec!["apiKey"];
    if config.auth.jwt.is_some() {
        schemes["bearer"] = json!({
            "httpAuthSecurityScheme": { "scheme": "Bearer", "bearerFormat": "JWT" },
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        });
        names.push("bearer");
    }
    let mut v1: Vec<Value> = names.iter().map(|n| json!({ "schemes": { *n: { "list": [] } } })).collect();
    let mut v03: Vec<Value> = names.iter().map(|n| json!({ *n: [] })).collect();
    if config.auth.anonymous {
        v1.push(json!({ "schemes": {} }));
        v03.push(json!({}));
    }
    card["securitySchemes"] = schemes;
    card["securityRequirements"] = json!(v1);
    card["security"] = json!(v03);
}

/// The extended card: the public one, plus a skill per skill of each
/// registered agent (`<agent>/<skill>`, tagged with the agent's name),
/// which a caller routes to with `switchyard.skill`. No agent URLs.
pub fn extended(
    public: &CardDocument,
    agents: &[switchyard_engine::AgentRecord],
) -> Result<AgentCard, crate::error::ApiError> {
    let mut card: AgentCard = serde_json::from_value(public.json()).map_err(|error| {
        tracing::error!(%error, "our own card does not parse");
        crate::error::ApiError::Internal
    })?;
    for agent in agents {
        let skills = agent.card.as_ref().and_then(|c| c.get("skills")).and_then(Value::as_array);
        for skill in skills.into_iter().flatten() {
            let Some(id) = skill.get("id").and_then(Value::as_str) else { continue };
            let text = |field: &str| skill.get(field).and_then(Value::as_str).unwrap_or(id).to_owned();
            card.skills.push(AgentSkill {
                id: format!("{}/{id}", agent.name),
                name: text("name"),
                description: text("description"),
                tags: vec!["agent".into(), agent.name.clone()],
                examples: None,
                input_modes: None,
                output_modes: None,
                security_requirements: None,
            });
        }
    }
    Ok(card)
}

/// A plan as a skill: picked with `{"switchyard": {"skill": NAME}}`.
fn plan_skill(plan: &PlanSpec) -> AgentSkill {
    let (kind, summary) = if let Some(steps) = &plan.pipeline {
        ("pipeline", format!("A pipeline: {}.", steps.join(" → ")))
    } else if let Some(members) = &plan.fanout {
        ("fanout", format!("A fan-out to {} (join: {}).", members.join(", "), plan.join.as_deref().unwrap_or("all")))
    } else if let Some(skill) = &plan.fanout_skill {
        (
            "fanout",
            format!(
                "A fan-out to every healthy agent offering {skill:?} (join: {}).",
                plan.join.as_deref().unwrap_or("all")
            ),
        )
    } else {
        ("delegate", format!("Delegates to {}.", plan.agent.as_deref().unwrap_or("?")))
    };
    AgentSkill {
        id: plan.name.clone(),
        name: plan.name.clone(),
        description: plan.description.clone().unwrap_or(summary),
        tags: vec!["plan".into(), kind.into()],
        examples: None,
        input_modes: None,
        output_modes: None,
        security_requirements: None,
    }
}

/// The card as last built, rebuilt when the plans it offers change.
#[derive(Debug)]
pub struct CardCache {
    config: ApiConfig,
    current: std::sync::Mutex<(Vec<PlanSpec>, std::sync::Arc<CardDocument>)>,
}

impl CardCache {
    pub fn new(config: &ApiConfig) -> Self {
        let doc = std::sync::Arc::new(CardDocument::build(config, &[]));
        CardCache { config: config.clone(), current: std::sync::Mutex::new((Vec::new(), doc)) }
    }

    /// The card for these plans (built again only if they changed).
    pub fn for_plans(&self, plans: Vec<PlanSpec>) -> std::sync::Arc<CardDocument> {
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != plans {
            let doc = std::sync::Arc::new(CardDocument::build(&self.config, &plans));
            *current = (plans, doc);
        }
        current.1.clone()
    }

    /// The card as last built (when the plans cannot be read).
    pub fn last(&self) -> std::sync::Arc<CardDocument> {
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_parses_as_a_v1_card_and_declares_every_interface() {
        let plan = PlanSpec { name: "research".into(), fanout: Some(vec!["a".into()]), ..PlanSpec::default() };
        let doc = CardDocument::build(&ApiConfig::new("http://broker.example:8080/"), &[plan]);
        let card: AgentCard = serde_json::from_value(doc.json()).expect("a v1 card");
        let declared: Vec<(&str, &str)> = card
            .supported_interfaces
            .iter()
            .map(|i| (i.protocol_binding.as_str(), i.protocol_version.as_str()))
            .collect();
        assert_eq!(declared, [("JSONRPC", "1.0"), ("HTTP+JSON", "1.0"), ("JSONRPC", "0.3"), ("HTTP+JSON", "0.3")]);
        let json = doc.json();
        let v03: Vec<&str> = json["additionalInterfaces"]
            .as_array()
            .expect("v0.3")
            .iter()
            .filter_map(|i| i["transport"].as_str())
            .collect();
        assert_eq!(v03, ["JSONRPC", "HTTP+JSON"]);
        let with_grpc = ApiConfig {
            grpc_url: Some("broker.example:50051".into()),
            ..ApiConfig::new("http://broker.example:8080/")
        };
        let doc_grpc = CardDocument::build(&with_grpc, &[]);
        let transports: Vec<(String, String)> = doc_grpc.json()["additionalInterfaces"]
            .as_array()
            .expect("v0.3")
            .iter()
            .map(|i| (i["transport"].as_str().unwrap_or("").to_owned(), i["url"].as_str().unwrap_or("").to_owned()))
            .collect();
        assert_eq!(transports[2], ("GRPC".to_owned(), "broker.example:50051".to_owned()), "{transports:?}");
        assert!(card.skills.iter().any(|s| s.id == "research" && s.tags.contains(&"fanout".to_owned())));
        assert!(card.supported_interfaces.iter().all(|i| i.url == "http://broker.example:8080"));
        assert_eq!(card.capabilities.streaming, Some(true));
        assert!(!card.skills.is_empty());
        assert_eq!(card.capabilities.extended_agent_card, Some(true));
        let schemes = card.security_schemes.expect("schemes");
        assert!(matches!(schemes.get("apiKey"), Some(a2a::SecurityScheme::ApiKey(k)) if k.name == "X-API-Key"));
        assert_eq!(card.security_requirements.map(|r| r.len()), Some(1), "credentials required by default");
        let json = doc.json();
        assert_eq!(json["security"], json!([{ "apiKey": [] }]));
        assert_eq!(json["securitySchemes"]["apiKey"]["in"], "header");
    }

    #[test]
    fn a_matching_etag_gets_not_modified() {
        let doc = CardDocument::build(&ApiConfig::new("http://x"), &[]);
        let mut headers = HeaderMap::new();
        let first = doc.respond(&headers);
        let tag = first.headers().get(header::ETAG).cloned().expect("etag");
        headers.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(doc.respond(&headers).status(), StatusCode::NOT_MODIFIED);
    }
}
