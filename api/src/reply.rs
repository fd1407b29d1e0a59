//! What a JSON-RPC method answers, whichever protocol version dispatched
//! it (v1.0 in [`crate::jsonrpc`], v0.3 in [`crate::compat`]).

use serde_json::Value;
use tokio_stream::wrappers::ReceiverStream;

use crate::events::StreamItem;

/// One result, or a stream of them.
#[derive(Debug)]
pub enum Reply {
    Value(Value),
    Stream(ReceiverStream<StreamItem>),
}
