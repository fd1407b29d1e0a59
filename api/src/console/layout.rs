//! The page around every console page, and the small pieces pages share:
//! state badges, times and durations, forms that carry the anti-forgery
//! token, and the answer to a failed read.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::session::Viewer;

/// The console's sections, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Overview,
    Tasks,
    Agents,
    Queues,
    Plans,
}

const SECTIONS: [(Section, &str, &str); 5] = [
    (Section::Overview, "/console", "Overview"),
    (Section::Tasks, "/console/tasks", "Tasks"),
    (Section::Agents, "/console/agents", "Agents"),
    (Section::Queues, "/console/queues", "Queues"),
    (Section::Plans, "/console/plans", "Plans"),
];

/// A whole HTML document around `body`.
pub(super) fn document(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="referrer" content="same-origin";
                    title { (title) " · Switchyard" }
                    link rel="stylesheet" href="/console/assets/console.css";
                    script src="/console/assets/console.js" defer {}
                }
                body { (body) }
            }
        }
        .into_string(),
    )
}

/// A page of the console: navigation, who is signed in, then `main`.
pub(super) fn page(title: &str, viewer: &Viewer, section: Section, main: Markup) -> Response {
    let next = percent_encoding::utf8_percent_encode(&viewer.path, percent_encoding::NON_ALPHANUMERIC).to_string();
    let body = html! {
        a .skip href="#main" { "Skip to content" }
        header .top {
            a .brand href="/console" { "Switchyard" }
            nav aria-label="Console" {
                ul {
                    @for (s, href, label) in SECTIONS {
                        li {
                            @if s == section { a href=(href) aria-current="page" { (label) } }
                            @else { a href=(href) { (label) } }
                        }
                    }
                }
            }
            @if viewer.stores.len() > 1 {
                nav .stores aria-label="Store" {
                    span { "Store" }
                    ul {
                        @for name in &viewer.stores {
                            li {
                                @if *name == viewer.store { a href={ "/console/store/" (name) "?next=" (next) } aria-current="true" { (name) } }
                                @else { a href={ "/console/store/" (name) "?next=" (next) } { (name) } }
                            }
                        }
                    }
                }
            }
            div .who {
                @if viewer.open {
                    span .open-note { "Open: no sign-in needed" }
                } @else {
                    span { (viewer.who.principal) }
                    form method="post" action="/console/logout" {
                        (csrf(viewer))
                        button .link type="submit" { "Sign out" }
                    }
                }
            }
        }
        @if viewer.open {
            p .banner role="note" {
                "This deployment takes anonymous calls and has no admin token, so this console is open to anyone who \
                 can reach it. Configure [auth] or an admin token to require a sign-in."
            }
        }
        main #main tabindex="-1" { (main) }
    };
    document(title, body).into_response()
}

/// A page with only a heading and a sentence (refusals, errors).
pub(super) fn bare(title: &str, text: &str) -> Html<String> {
    document(
        title,
        html! {
            main #main .signin {
                h1 { (title) }
                p { (text) }
                p { a href="/console" { "Back to the console" } }
            }
        },
    )
}

/// The answer to a read the store could not serve.
pub(super) fn unavailable(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "console read failed");
    (StatusCode::SERVICE_UNAVAILABLE, bare("Unavailable", "The database is unavailable; try again shortly."))
        .into_response()
}

/// A page's part only (what the script re-fetches), or the whole page.
pub(super) fn part_or_page(part: bool, title: &str, viewer: &Viewer, section: Section, main: Markup) -> Response {
    if part { Html(main.into_string()).into_response() } else { page(title, viewer, section, main) }
}

/// The hidden field every form posts.
/// What every form carries: the anti-forgery token, and the store the
/// page showed (an action acts on that store).
pub(super) fn csrf(viewer: &Viewer) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(viewer.csrf);
        @if viewer.stores.len() > 1 { input type="hidden" name="store" value=(viewer.store); }
    }
}

/// A one-button form posting to `action`.
pub(super) fn button(viewer: &Viewer, action: &str, label: &str, confirm: Option<&str>) -> Markup {
    html! {
        form .inline method="post" action=(action) data-confirm=[confirm] {
            (csrf(viewer))
            button type="submit" { (label) }
        }
    }
}

/// A task state as a coloured badge (A2A's names, as in the API).
pub(super) fn state(state: &str) -> Markup {
    let class = match state {
        "completed" => "ok",
        "failed" | "rejected" => "bad",
        "canceled" => "off",
        "input_required" | "auth_required" => "ask",
        _ => "run",
    };
    html! { span class={ "state " (class) } { (state.replace('_', "-")) } }
}

/// An instant, readable and exact (UTC, milliseconds).
pub(super) fn time(at: DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S%.3f")) } }
}

/// A duration as a person reads it: 850 ms, 4.2 s, 3 min 5 s, 2 h 10 min.
pub(super) fn human(d: chrono::TimeDelta) -> String {
    let ms = d.num_milliseconds().max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

/// A task id, linked, shortened for tables (the whole id is the title).
pub(super) fn task_link(id: &str) -> Markup {
    html! { a .id href={ "/console/tasks/" (id) } title=(id) { code { (id.get(..13).unwrap_or(id)) "…" } } }
}

/// Text shown as it is, preserving lines.
pub(super) fn pre(text: &str) -> Markup {
    html! { pre { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(chrono::TimeDelta::milliseconds(850)), "850 ms");
        assert_eq!(human(chrono::TimeDelta::milliseconds(4_230)), "4.2 s");
        assert_eq!(human(chrono::TimeDelta::seconds(185)), "3 min 5 s");
        assert_eq!(human(chrono::TimeDelta::minutes(130)), "2 h 10 min");
        assert_eq!(human(chrono::TimeDelta::milliseconds(-5)), "0 ms");
    }

    #[test]
    fn values_are_escaped() {
        let cell = html! { td { (pre("<script>alert(1)</script>")) } }.into_string();
        assert!(cell.contains("&lt;script&gt;"), "{cell}");
        assert!(!cell.contains("<script>"), "{cell}");
    }
}
