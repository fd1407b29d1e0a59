//! Registered agents: their cards, breakers, load and last hour; adding
//! and removing them under the admin API's rules (egress policy included).

use axum::Form;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_engine::{AgentLoad, AgentRecord};

use super::layout::{self, Section};
use super::session::{self, Viewer};
use super::task::acting;
use crate::state::AppState;

/// `GET /console/agents`.
pub(super) async fn page(State(state): State<AppState>, headers: HeaderMap, OriginalUri(uri): OriginalUri) -> Response {
    let viewer = match session::viewer(&state, &headers, &uri.to_string()).await {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    render(&state, &viewer, None, StatusCode::OK).await
}

async fn render(state: &AppState, viewer: &Viewer, problem: Option<&str>, status: StatusCode) -> Response {
    let (agents, loads) =
        match tokio::try_join!(viewer.store(state).agents_list(), viewer.store(state).console_agents()) {
            Ok(read) => read,
            Err(e) => return layout::unavailable(e),
        };
    let trusted = state.handler.config().console.trusted_cards.as_deref();
    let main = html! {
        h1 { "Agents" }
        @if let Some(problem) = problem { p .error role="alert" { (problem) } }
        @if agents.is_empty() { p { "No agent is registered." } }
        @for agent in &agents {
            (agent_card(viewer, agent, loads.iter().find(|l| l.agent == agent.name), trusted))
        }
        section aria-labelledby="add-agent" {
            h2 #add-agent { "Add an agent" }
            form .add method="post" action="/console/agents" {
                (layout::csrf(viewer))
                label { "Name" input name="name" required pattern="[A-Za-z0-9][A-Za-z0-9_.\\-]{0,62}"; }
                label { "URL" input name="url" type="url" required placeholder="https://agent.example/a2a"; }
                button type="submit" { "Add agent" }
            }
        }
    };
    let mut response = layout::page("Agents", viewer, Section::Agents, main);
    *response.status_mut() = status;
    response
}

/// What can be said of a stored card's signature.
fn signature(card: &Value, trusted: Option<&jsonwebtoken::jwk::JwkSet>) -> String {
    let signed = card.get("signatures").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
    match (signed, trusted) {
        (false, _) => "unsigned".into(),
        (true, None) => "signed (no [trust] keys here to verify it against)".into(),
        (true, Some(keys)) => match switchyard_engine::card_signature::verify(card, keys) {
            Ok(kid) => format!("signature verified (key {kid})"),
            Err(why) => format!("signature does NOT verify: {why}"),
        },
    }
}

fn agent_card(
    viewer: &Viewer,
    agent: &AgentRecord,
    load: Option<&AgentLoad>,
    trusted: Option<&jsonwebtoken::jwk::JwkSet>,
) -> Markup {
    let card = agent.card.as_ref();
    let text = |key: &str| card.and_then(|c| c.get(key)).and_then(Value::as_str).map(str::to_owned);
    let skills: Vec<&Value> =
        card.and_then(|c| c.get("skills")).and_then(Value::as_array).map(|s| s.iter().collect()).unwrap_or_default();
    let interfaces: Vec<&Value> = card
        .and_then(|c| c.get("supportedInterfaces").or_else(|| c.get("additionalInterfaces")))
        .and_then(Value::as_array)
        .map(|s| s.iter().collect())
        .unwrap_or_default();
    let open_until = agent.breaker_open_until.filter(|until| *until > Utc::now());
    html! {
        article .agent aria-labelledby={ "agent-" (agent.name) } {
            header {
                h2 #{ "agent-" (agent.name) } { (agent.name) }
                @if let Some(until) = open_until {
                    span .state.bad { "breaker open until " (layout::time(until)) }
                } @else {
                    span .state.ok { "breaker closed" }
                }
                (layout::button(viewer, &format!("/console/agents/{}/remove", agent.name), "Remove",
                    Some("Remove this agent? Tasks already delegated keep running.")))
            }
            dl .facts {
                dt { "URL" } dd { code { (agent.url) } }
                dt { "Card" }
                dd {
                    @if card.is_some() {
                        (text("name").unwrap_or_default())
                        @if let Some(version) = text("version") { " · version " (version) }
                        @if let Some(at) = agent.card_fetched_at { " · fetched " (layout::time(at)) }
                        " · " (card.map(|c| signature(c, trusted)).unwrap_or_default())
                    } @else { "not fetched yet (workers fetch it on first use)" }
                }
                @if !interfaces.is_empty() {
                    dt { "Interfaces" }
                    dd { ul .plain { @for i in &interfaces {
                        li {
                            (i.get("protocolBinding").or_else(|| i.get("transport")).and_then(Value::as_str).unwrap_or("?"))
                            @if let Some(v) = i.get("protocolVersion").and_then(Value::as_str) { " " (v) }
                            " " code { (i.get("url").and_then(Value::as_str).unwrap_or_default()) }
                        }
                    } } }
                }
                dt { "Skills" }
                dd {
                    @if skills.is_empty() { "—" }
                    ul .plain { @for s in &skills {
                        li { strong { (s.get("id").and_then(Value::as_str).unwrap_or("?")) }
                            @if let Some(d) = s.get("description").and_then(Value::as_str) { " — " (d) } }
                    } }
                }
                dt { "Consecutive failures" } dd { (agent.consecutive_failures) }
                @if let Some(load) = load {
                    dt { "In flight" } dd { a href={ "/console/tasks?agent=" (agent.name) "&state=working" } { (load.in_flight) } }
                    dt { "Last hour" }
                    dd {
                        (load.completed) " completed, " (load.failed) " failed or rejected"
                        @if let Some(ms) = load.mean_ms { ", mean " (format!("{ms:.0}")) " ms" }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AddForm {
    csrf: String,
    name: String,
    url: String,
}

/// `POST /console/agents`.
pub(super) async fn add(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<AddForm>) -> Response {
    let viewer = match acting(&state, &headers, &form.csrf).await {
        Ok(viewer) => viewer,
        Err(refused) => return refused,
    };
    let (name, url) = (form.name.trim(), form.url.trim());
    if let Err(problem) = crate::admin::check_agent(&state, name, url) {
        return render(&state, &viewer, Some(&problem), StatusCode::BAD_REQUEST).await;
    }
    // On every store (as the admin API writes it).
    if let Err(failed) = state.stores.agent_upsert(name, url, None).await {
        return layout::unavailable(failed);
    }
    let entry = viewer.who.audit("admin.agent.add").with_detail(json!({ "agent": name, "url": url, "via": "console" }));
    viewer.store(&state).audit(&entry).await;
    Redirect::to("/console/agents").into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct RemoveForm {
    csrf: String,
}

/// `POST /console/agents/{name}/remove`.
pub(super) async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<RemoveForm>,
) -> Response {
    let viewer = match acting(&state, &headers, &form.csrf).await {
        Ok(viewer) => viewer,
        Err(refused) => return refused,
    };
    match state.stores.agent_remove(&name).await {
        Ok(true) => {
            let entry = viewer.who.audit("admin.agent.remove").with_detail(json!({ "agent": name, "via": "console" }));
            viewer.store(&state).audit(&entry).await;
            Redirect::to("/console/agents").into_response()
        }
        Ok(false) => render(&state, &viewer, Some("no such agent"), StatusCode::NOT_FOUND).await,
        Err(e) => layout::unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cards_signature_is_described_as_far_as_it_can_be_checked() {
        let unsigned = json!({"name": "a"});
        let signed = json!({"name": "a", "signatures": [{"protected": "e30", "signature": "AA"}]});
        let no_keys = jsonwebtoken::jwk::JwkSet { keys: vec![] };
        assert_eq!(signature(&unsigned, None), "unsigned");
        assert_eq!(signature(&unsigned, Some(&no_keys)), "unsigned");
        assert!(signature(&signed, None).contains("no [trust] keys"));
        assert!(signature(&signed, Some(&no_keys)).starts_with("signature does NOT verify"));
    }
}
