//! Who may use the console, and how a browser stays signed in.
//!
//! The console follows the admin API's rule: the admin token, or an API key
//! or JWT carrying the admin scope. The sign-in form checks the credential
//! and keeps it in a cookie that is `HttpOnly` (no script reads it),
//! `SameSite=Strict` (no other site's page sends it), signed (HMAC-SHA256,
//! so it cannot be altered) and expiring; every page checks the credential
//! again, so a revoked key ends its sessions at once. Every action is a
//! POST carrying a token derived from the session, and is refused when the
//! browser says the request came from another site.
//!
//! A deployment that lets anyone call it (anonymous A2A calls, no admin
//! token) opens the console to anyone who can reach it, as `dev` without
//! `[auth]` does, and every page says so.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{KeyInit, Mac};
use maud::html;
use serde::Deserialize;

use super::layout;
use crate::auth::{Principal, same_secret};
use crate::state::AppState;

/// The session cookie's name.
const COOKIE: &str = "switchyard_console";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Whoever is looking at a page.
#[derive(Debug, Clone)]
pub(super) struct Viewer {
    pub who: Principal,
    /// Open to anyone (no credential needed, none given).
    pub open: bool,
    /// The anti-forgery token this viewer's forms carry.
    pub csrf: String,
    /// The store the pages show (see [`super::store_choice`]), and every
    /// store's name, for the switch in the header.
    pub store: String,
    pub stores: Vec<String>,
    /// The page's own path, for coming back to it after a switch.
    pub path: String,
}

impl Viewer {
    /// The store the pages show.
    pub(super) fn store<'a>(&self, state: &'a AppState) -> &'a switchyard_engine::Store {
        super::store_choice::store(state, &self.store)
    }
}

/// Why a page is not shown.
#[derive(Debug)]
pub(super) enum Refusal {
    /// Not signed in (or the session ended): to the sign-in form.
    SignIn { next: String },
    /// Signed in with a credential that may not use the console.
    Forbidden(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn { next } => {
                let target = format!("/console/login?next={}", percent_encoding::utf8_percent_encode(&next, QUERY));
                Redirect::to(&target).into_response()
            }
            Refusal::Forbidden(why) => (StatusCode::FORBIDDEN, layout::bare("Not allowed", &why)).into_response(),
        }
    }
}

const QUERY: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.');

/// Who is looking, from the session cookie; `path` is where to come back
/// to after signing in.
pub(super) async fn viewer(state: &AppState, headers: &HeaderMap, path: &str) -> Result<Viewer, Refusal> {
    let store = super::store_choice::chosen(state, headers);
    let stores = state.stores.all().map(|(name, _)| name.to_owned()).collect();
    let viewing = |who, open, csrf| Viewer { who, open, csrf, store, stores, path: path.to_owned() };
    let session = cookie(headers).and_then(|value| verify(&config_key(state), value));
    let Some((credential, payload)) = session else {
        if open(state) {
            let who = Principal {
                tenant: None,
                principal: "console".into(),
                credential: "anonymous".into(),
                admin: true,
                rate: None,
            };
            return Ok(viewing(who, true, token(&config_key(state), "open")));
        }
        return Err(Refusal::SignIn { next: path.to_owned() });
    };
    match credential_principal(state, &credential).await {
        Ok(who) => Ok(viewing(who, false, token(&config_key(state), &payload))),
        Err(crate::ApiError::Forbidden(why)) => Err(Refusal::Forbidden(why)),
        Err(_) => Err(Refusal::SignIn { next: path.to_owned() }),
    }
}

/// Whether this deployment's console is open to anyone (see [`super::open_to_anyone`]).
pub(super) fn open(state: &AppState) -> bool {
    super::open_to_anyone(state.auth.config().anonymous, state.handler.config().admin_token.is_some())
}

fn config_key(state: &AppState) -> [u8; 32] {
    state.handler.config().console.key
}

/// The principal a credential (admin token, API key or JWT) stands for,
/// by the admin API's rule.
async fn credential_principal(state: &AppState, credential: &str) -> Result<Principal, crate::ApiError> {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {credential}"))
        .map_err(|_| crate::ApiError::Unauthenticated("the credential holds characters no header may".into()))?;
    headers.insert(header::AUTHORIZATION, value);
    let who = crate::admin::admin_principal(state, &headers).await?;
    // An admin that may not act is an admin in name only: the console would
    // let it read what the admin API would refuse it.
    state.auth.admit(&who)?;
    Ok(who)
}

/// Refuses a form posted from another site: its token must be this
/// viewer's, and the browser must not say it came from elsewhere.
pub(super) fn check_form(viewer: &Viewer, headers: &HeaderMap, given: &str) -> Result<(), Refusal> {
    let refuse = |why: &str| Refusal::Forbidden(why.to_owned());
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site != "same-origin" && site != "none")
    {
        return Err(refuse("the form was sent from another site"));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin == "null" || origin_host != host {
            return Err(refuse("the form was sent from another site"));
        }
    }
    if !same_secret(given.as_bytes(), viewer.csrf.as_bytes()) {
        return Err(refuse("the form is stale or was not made by this console: reload the page and try again"));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
pub(super) struct Next {
    next: Option<String>,
}

/// Only the console's own pages are returned to after signing in.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/console".to_owned(),
    }
}

/// `GET /console/login`.
pub(super) async fn sign_in_form(State(state): State<AppState>, Query(query): Query<Next>) -> Response {
    if open(&state) {
        return Redirect::to("/console").into_response();
    }
    sign_in_page(StatusCode::OK, &safe_next(query.next.as_deref()), None)
}

fn sign_in_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let body = html! {
        main #main .signin {
            h1 { "Switchyard console" }
            p { "Sign in with the admin token, or an API key or JWT that carries the admin scope." }
            @if let Some(error) = error { p .error role="alert" { (error) } }
            form method="post" action="/console/login" {
                input type="hidden" name="next" value=(next);
                label for="credential" { "Credential" }
                input #credential type="password" name="credential" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
        }
    };
    (status, layout::document("Sign in", body)).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct SignIn {
    credential: String,
    next: Option<String>,
}

/// `POST /console/login`: checks the credential, then keeps it in the
/// session cookie.
pub(super) async fn sign_in(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<SignIn>) -> Response {
    let next = safe_next(form.next.as_deref());
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|s| s == "cross-site") {
        return sign_in_page(StatusCode::FORBIDDEN, &next, Some("sign in from the console's own page"));
    }
    let credential = form.credential.trim();
    let who = match credential_principal(&state, credential).await {
        Ok(who) => who,
        Err(e) => {
            tracing::warn!(target: "switchyard::audit", action = "console.signin.refused", reason = %e);
            let status = e.classify().http;
            let why = match &e {
                crate::ApiError::Forbidden(why) => format!("Not allowed: {why}."),
                _ => "Not signed in: that is neither the admin token nor a valid API key or JWT.".to_owned(),
            };
            return sign_in_page(status, &next, Some(&why));
        }
    };
    state.store.audit(&who.audit("console.signin")).await;
    let config = &state.handler.config().console;
    // In milliseconds: a session of a few seconds must not end early by a
    // rounded-down second.
    let ttl = i64::try_from(config.session_ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let expires = chrono::Utc::now().timestamp_millis().saturating_add(ttl);
    let value = sign(&config.key, credential, expires);
    let secure = if state.handler.config().public_url.starts_with("https://") { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        config.session_ttl.as_secs()
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Debug, Deserialize)]
pub(super) struct SignOut {
    csrf: String,
}

/// `POST /console/logout`.
pub(super) async fn sign_out(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<SignOut>) -> Response {
    if let Ok(viewer) = viewer(&state, &headers, "/console").await
        && let Err(refused) = check_form(&viewer, &headers, &form.csrf)
    {
        return refused.into_response();
    }
    let mut response = Redirect::to("/console/login").into_response();
    let clear = format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(clear) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, clear);
    }
    response
}

/// The session cookie's value, if the request has one.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    cookie_named(headers, COOKIE)
}

/// The value of the cookie called `name`, if the request has one.
pub(super) fn cookie_named<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

fn mac(key: &[u8; 32], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `payload.signature`, the payload holding the credential and its expiry
/// (Unix milliseconds).
fn sign(key: &[u8; 32], credential: &str, expires: i64) -> String {
    let payload = B64.encode(serde_json::json!({ "c": credential, "e": expires }).to_string());
    let signature = B64.encode(mac(key, payload.as_bytes()));
    format!("{payload}.{signature}")
}

/// The credential of a well-signed, unexpired session, and its payload.
fn verify(key: &[u8; 32], value: &str) -> Option<(String, String)> {
    let (payload, signature) = value.split_once('.')?;
    let signature = B64.decode(signature).ok()?;
    if !same_secret(&signature, &mac(key, payload.as_bytes())) {
        return None;
    }
    let decoded: serde_json::Value = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    let expires = decoded.get("e")?.as_i64()?;
    if expires <= chrono::Utc::now().timestamp_millis() {
        return None;
    }
    Some((decoded.get("c")?.as_str()?.to_owned(), payload.to_owned()))
}

/// The anti-forgery token of a session (its payload, or "open").
fn token(key: &[u8; 32], session: &str) -> String {
    B64.encode(mac(key, format!("csrf\0{session}").as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_verifies_only_as_signed_and_until_it_expires() {
        let key = [7u8; 32];
        let later = chrono::Utc::now().timestamp_millis() + 60_000;
        let value = sign(&key, "sy_live_abc", later);
        let (credential, payload) = verify(&key, &value).expect("valid");
        assert_eq!(credential, "sy_live_abc");
        assert!(value.starts_with(&payload));
        // Another key, an altered payload, an expired session: none verify.
        assert!(verify(&[8u8; 32], &value).is_none());
        let forged = B64.encode(serde_json::json!({ "c": "other", "e": later }).to_string());
        let (_, signature) = value.split_once('.').expect("dot");
        assert!(verify(&key, &format!("{forged}.{signature}")).is_none());
        assert!(verify(&key, &sign(&key, "sy_live_abc", chrono::Utc::now().timestamp_millis() - 1)).is_none());
        assert!(verify(&key, "garbage").is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; switchyard_console=xyz.abc; b=2"));
        assert_eq!(cookie(&headers), Some("xyz.abc"));
    }

    #[test]
    fn only_the_consoles_own_pages_are_returned_to() {
        assert_eq!(safe_next(Some("/console/tasks?state=failed")), "/console/tasks?state=failed");
        assert_eq!(safe_next(Some("https://evil.example/")), "/console");
        assert_eq!(safe_next(Some("//evil.example/console")), "/console");
        assert_eq!(safe_next(None), "/console");
    }

    #[test]
    fn tokens_differ_by_session() {
        let key = [1u8; 32];
        assert_ne!(token(&key, "a"), token(&key, "b"));
        assert_eq!(token(&key, "a"), token(&key, "a"));
    }
}
