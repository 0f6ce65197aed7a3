//! Proxy authentication: `u`/`p` URL parameters, HTTP Basic, or
//! `Authorization: Token user:pass`, compared in constant time.
//!
//! With `auth_secure`, the configured credentials are the encrypted form
//! (see `cipher`); the presented plaintext is encrypted before comparing.

use actix_web::http::header;
use actix_web::HttpRequest;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::{ApiError, Params};
use crate::cipher;
use crate::config::Config;

/// Rejects the request unless auth is off or its credentials match.
pub(super) fn check(req: &HttpRequest, params: &Params, config: &Config) -> Result<(), ApiError> {
    if !config.auth_enabled() {
        return Ok(());
    }
    let presented = credentials(req, params).ok_or(ApiError::Unauthorized)?;
    if matches(config, &presented.0, &presented.1) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The first credentials found, in the reference's order of precedence.
fn credentials(req: &HttpRequest, params: &Params) -> Option<(String, String)> {
    if let (Some(u), Some(p)) = (params.get("u"), params.get("p")) {
        return Some((u.to_string(), p.to_string()));
    }
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(b64) = value.strip_prefix("Basic ") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some((u.to_string(), p.to_string()));
    }
    if let Some(token) = value.strip_prefix("Token ") {
        let (u, p) = token.trim().split_once(':')?;
        return Some((u.to_string(), p.to_string()));
    }
    None
}

fn matches(config: &Config, user: &str, pass: &str) -> bool {
    let (user, pass) = if config.auth_secure {
        (cipher::encrypt(user), cipher::encrypt(pass))
    } else {
        (user.to_string(), pass.to_string())
    };
    let u_ok = user.as_bytes().ct_eq(config.username.expose().as_bytes());
    let p_ok = pass.as_bytes().ct_eq(config.password.expose().as_bytes());
    bool::from(u_ok & p_ok)
}
