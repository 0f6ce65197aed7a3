//! The HTTP error type: the one place where failures become status codes
//! and InfluxDB-shaped bodies (`{"error":"..."}` plus `X-Influxdb-Error`).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::wal;

/// Every way an API request can fail.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The endpoint does not accept this HTTP method.
    #[error("method not allow")]
    MethodNotAllowed,
    /// Credentials missing or wrong.
    #[error("authentication failed")]
    Unauthorized,
    /// A required parameter or input is missing or malformed.
    #[error("{0}")]
    BadRequest(String),
    /// `db` parameter missing.
    #[error("database not found")]
    DatabaseNotFound,
    /// A named thing does not exist or cannot be resolved (`/api/v2/write` bucket).
    #[error("{0}")]
    NotFound(String),
    /// Database not in the configured `db_list`.
    #[error("database forbidden: {0}")]
    DatabaseForbidden(String),
    /// Some or all lines of a write were refused; the good ones are queued.
    #[error("{0}")]
    LineProtocol(String),
    /// The request body (or its decompressed form) exceeds a limit.
    #[error("{0}")]
    TooLarge(String),
    /// The write-ahead queue cannot take the write now, but will by
    /// itself: a target backend's queue is full, the free-space reserve
    /// (`wal_min_free_mb`) is reached, or its storage failed and is
    /// recovering. 503 with `Retry-After`.
    #[error("{0}")]
    QueueFull(String),
    /// Our own storage failed; nothing was accepted.
    #[error("{0}")]
    Internal(String),
    /// No backend could answer.
    #[error("{0}")]
    Unavailable(String),
    /// The backends were reached but none answered in time (`query_timeout`).
    #[error("{0}")]
    BackendTimeout(String),
    /// The client was too slow sending its request.
    #[error("{0}")]
    Timeout(String),
    /// The request conflicts with one in progress (e.g. a CPU profile).
    #[error("{0}")]
    Conflict(String),
    /// A backend refused the request; its status and message are relayed.
    #[error("{message}")]
    Backend {
        /// The backend's HTTP status.
        status: u16,
        /// The backend's error message.
        message: String,
    },
}

impl From<wal::Error> for ApiError {
    fn from(e: wal::Error) -> ApiError {
        if e.is_temporary() {
            ApiError::QueueFull(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<crate::memory::TooLarge> for ApiError {
    fn from(e: crate::memory::TooLarge) -> ApiError {
        ApiError::TooLarge(format!("request body too large: it {e}"))
    }
}

impl From<crate::cluster::WriteError> for ApiError {
    fn from(e: crate::cluster::WriteError) -> ApiError {
        use crate::schema::WriteRefusal;
        match e {
            crate::cluster::WriteError::Wal(w) => ApiError::from(w),
            // influxd's statuses: 400 for the conflict, 500 for the missing policy.
            crate::cluster::WriteError::Refused(r @ WriteRefusal::FieldTypeConflict) => {
                ApiError::LineProtocol(r.to_string())
            }
            crate::cluster::WriteError::Refused(r @ WriteRefusal::RetentionPolicyNotFound(_)) => {
                ApiError::Internal(r.to_string())
            }
        }
    }
}

impl From<crate::influxql::Unwritable> for ApiError {
    fn from(e: crate::influxql::Unwritable) -> ApiError {
        use crate::influxql::Unwritable;
        match e {
            Unwritable::Database(_) => ApiError::NotFound(e.to_string()),
            // The answer the schema check gives a policy the backends lack.
            Unwritable::RetentionPolicy(rp) => ApiError::from(crate::cluster::WriteError::Refused(
                crate::schema::WriteRefusal::RetentionPolicyNotFound(rp),
            )),
        }
    }
}

impl From<crate::query::Error> for ApiError {
    fn from(e: crate::query::Error) -> ApiError {
        use crate::query::Error as Q;
        match e {
            Q::Statement(s) => ApiError::BadRequest(s.to_string()),
            Q::DatabaseNotFound => ApiError::DatabaseNotFound,
            Q::DatabaseForbidden(db) => ApiError::DatabaseForbidden(db),
            Q::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            Q::TimedOut(_) => ApiError::BackendTimeout(e.to_string()),
            Q::Backend { status, message } => ApiError::Backend { status, message },
            Q::Queue(w) => ApiError::from(w),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_)
            | ApiError::DatabaseNotFound
            | ApiError::DatabaseForbidden(_)
            | ApiError::LineProtocol(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::QueueFull(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BackendTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Backend { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = self.to_string();
        let body = serde_json::json!({ "error": message }).to_string() + "\n";
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header((header::CONTENT_TYPE, "application/json"));
        // Header values cannot hold control characters; the body has the
        // full message.
        let header_value: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(1024)
            .collect();
        resp.insert_header(("X-Influxdb-Error", header_value));
        if matches!(self, ApiError::QueueFull(_)) {
            resp.insert_header((header::RETRY_AFTER, "1"));
        }
        resp.body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn errors_are_influx_shaped_json_with_the_right_status() {
        let resp = ApiError::DatabaseForbidden("x".into()).error_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            resp.headers().get("X-Influxdb-Error").unwrap(),
            "database forbidden: x"
        );
        let body = resp.into_body().try_into_bytes().unwrap();
        assert_eq!(&body[..], b"{\"error\":\"database forbidden: x\"}\n");
    }

    #[test]
    fn writes_into_names_influxd_refuses_get_its_status_and_text() {
        use crate::influxql::Unwritable;
        let resp = ApiError::from(Unwritable::Database("a\nb".into())).error_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body = resp.into_body().try_into_bytes().unwrap();
        assert_eq!(
            &body[..],
            b"{\"error\":\"database not found: \\\"a\\\\nb\\\"\"}\n"
        );
        let e = Unwritable::RetentionPolicy("a/b".into());
        let text = e.to_string();
        let resp = ApiError::from(e).error_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers().get("X-Influxdb-Error").unwrap(), &text);
    }

    #[test]
    fn a_full_queue_is_503_with_retry_after() {
        let e: ApiError = wal::Error::Full {
            backend: "b".into(),
            queued: 1,
            max: 1,
        }
        .into();
        let resp = e.error_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn backends_that_time_out_are_504_and_unreachable_ones_503() {
        use crate::query::Error as Q;
        let timed_out = ApiError::from(Q::TimedOut("timeout after 2s".into())).error_response();
        assert_eq!(timed_out.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            timed_out.headers().get("X-Influxdb-Error").unwrap(),
            "backends unavailable: timeout after 2s"
        );
        let down = ApiError::from(Q::Unavailable("refused".into())).error_response();
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_queue_short_of_disk_or_with_failed_storage_is_503_with_retry_after() {
        for e in [
            wal::Error::LowDisk {
                free_mb: 10,
                reserve_mb: 256,
            },
            wal::Error::Failed {
                error: "IO error: No space left on device".into(),
            },
        ] {
            let message = e.to_string();
            let resp = ApiError::from(e).error_response();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{message}");
            assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "1");
            let body = resp.into_body().try_into_bytes().unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["error"], message);
        }
        let e = ApiError::from(wal::Error::Storage("IO error: read".into()));
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn control_characters_never_reach_the_error_header() {
        let resp = ApiError::LineProtocol("a\nb".into()).error_response();
        assert_eq!(resp.headers().get("X-Influxdb-Error").unwrap(), "a b");
    }
}
