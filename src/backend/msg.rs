//! Messages understood by [`BackendActor`](super::BackendActor).

use actix::Message;

/// New records were appended to the backend's queue.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Notify;

/// Stop the actor for good (backend removed from the config, or shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Stop;
