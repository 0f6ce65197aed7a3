//! Messages understood by [`BackendActor`](super::BackendActor).

use actix::Message;

/// New records were appended to the backend's queue.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Notify;

/// Run one InfluxQL statement on the backend and return its JSON answer.
#[derive(Debug, Message)]
#[rtype(result = "Result<serde_json::Value, super::client::Error>")]
pub struct Query {
    /// Database parameter.
    pub db: String,
    /// Statement text.
    pub q: String,
}

/// Stop the actor for good (backend removed from the config, or shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stop;
