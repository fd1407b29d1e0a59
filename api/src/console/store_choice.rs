//! Which store the console shows, when the deployment has several: the
//! viewer's choice, kept in a cookie so that every link and form of the
//! console stays as it is, and switched from the header. A task's page
//! finds its task on whichever store holds it, so a link to one works for
//! anyone whatever they chose.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use switchyard_engine::{DEFAULT_STORE, Store, StoreError, TaskId, TaskRecord};

use super::session::Viewer;

use crate::state::AppState;

const COOKIE: &str = "switchyard_store";

/// The store the viewer chose, if it is one this api serves; else the default.
pub(super) fn chosen(state: &AppState, headers: &HeaderMap) -> String {
    super::session::cookie_named(headers, COOKIE)
        .filter(|name| state.stores.named(name).is_some())
        .unwrap_or(DEFAULT_STORE)
        .to_owned()
}

/// The store called `name` (the viewer's choice, checked when it was read).
pub(super) fn store<'a>(state: &'a AppState, name: &str) -> &'a Store {
    state.stores.named(name).unwrap_or(&state.store)
}

/// Task `id`, from the viewer's store or else from whichever store holds
/// it; the viewer is then looking at that store (a link to a task works
/// whatever the store chosen). Task ids are unique across stores.
pub(super) async fn locate(state: &AppState, viewer: &mut Viewer, id: TaskId) -> Result<TaskRecord, StoreError> {
    let chosen = viewer.store.clone();
    let others = state.stores.all().filter(|(name, _)| **name != *chosen);
    for (name, store) in std::iter::once((chosen.as_str(), store(state, &chosen))).chain(others) {
        match store.task_load(id).await {
            Ok(task) => {
                viewer.store = name.to_owned();
                return Ok(task);
            }
            Err(StoreError::TaskNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::TaskNotFound(id))
}

/// A form names the store it was rendered for (every console form carries
/// it): an action acts there, whatever the viewer switched to since.
pub(super) fn from_form(state: &AppState, viewer: &mut Viewer, store: Option<&str>) {
    if let Some(store) = store.filter(|s| state.stores.named(s).is_some()) {
        viewer.store = store.to_owned();
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Back {
    next: Option<String>,
}

/// `GET /console/store/{name}?next=PATH`: shows that store from now on,
/// back on the page it was chosen from. (A view preference, like a sort
/// order: nothing to forge.)
pub(super) async fn switch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(back): Query<Back>,
) -> Response {
    // Only back into the console, never to another site.
    let next = back
        .next
        .filter(|n| n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/console".to_owned());
    let mut response = Redirect::to(&next).into_response();
    if state.stores.named(&name).is_none() {
        return response;
    }
    let cookie = format!("{COOKIE}={name}; Path=/console; HttpOnly; SameSite=Lax");
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}
