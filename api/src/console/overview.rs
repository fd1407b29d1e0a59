//! The overview: tasks by state, tenant and agent; the last hour's
//! throughput and durations; dead letters and open breakers as alerts.

use axum::extract::{OriginalUri, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use switchyard_engine::MinuteStat;

use super::layout::{self, Section};
use super::session;
use crate::console_state::OverviewReading;
use crate::state::AppState;

/// How long one reading of the counts serves every viewer: they scan every
/// task, and an overview open in many browsers must not scan that often.
pub(super) const FRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// The figures, read again only when the last reading is older than
/// [`FRESH`]; concurrent viewers wait for one reading rather than each
/// making their own.
/// One reading per store.
async fn reading(state: &AppState, viewer: &session::Viewer) -> Result<OverviewReading, switchyard_engine::StoreError> {
    let mut cached = state.console.overview.lock().await;
    if let Some((when, reading)) = cached.get(&viewer.store)
        && when.elapsed() < FRESH
    {
        return Ok(reading.clone());
    }
    let store = viewer.store(state);
    let (counts, minutes, stats) = tokio::try_join!(store.console_counts(), store.console_minutes(), store.stats())?;
    let reading = OverviewReading { counts, minutes, stats, at: Utc::now() };
    cached.insert(viewer.store.clone(), (std::time::Instant::now(), reading.clone()));
    Ok(reading)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Part {
    part: Option<String>,
}

/// `GET /console`.
pub(super) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Part>,
) -> Response {
    let viewer = match session::viewer(&state, &headers, &uri.to_string()).await {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let OverviewReading { counts, minutes, stats, at } = match reading(&state, &viewer).await {
        Ok(reading) => reading,
        Err(e) => return layout::unavailable(e),
    };
    let dead_deliveries = counts.dead_deliveries;
    let dead_jobs: i64 = stats.jobs.iter().filter(|(s, _, _)| s == "dead").map(|(_, _, n)| n).sum();
    let open_breakers: Vec<&str> =
        stats.agents.iter().filter(|(_, open, _)| *open).map(|(n, _, _)| n.as_str()).collect();
    let total: i64 = counts.by_state.iter().map(|(_, n)| n).sum();
    let main = html! {
        div data-live="/console?part=main" data-every="5000" {
            h1 { "Overview" }
            p .as-of { "As of " (layout::time(at)) " (counted at most every " (FRESH.as_secs()) " s)" }
            @if dead_jobs > 0 || dead_deliveries > 0 || !open_breakers.is_empty() {
                ul .alerts role="status" {
                    @if dead_jobs > 0 {
                        li { a href="/console/queues#dead-jobs" { (dead_jobs) " dead job" @if dead_jobs != 1 { "s" } } }
                    }
                    @if dead_deliveries > 0 {
                        li { a href="/console/queues#dead-deliveries" {
                            (dead_deliveries) " dead webhook deliver" @if dead_deliveries != 1 { "ies" } @else { "y" }
                        } }
                    }
                    @for agent in &open_breakers {
                        li { a href="/console/agents" { "breaker open: " (agent) } }
                    }
                }
            }
            section aria-labelledby="by-state" {
                h2 #by-state { "Tasks by state" }
                ul .cards {
                    li { a href="/console/tasks" { span .n { (total) } span { "all" } } }
                    @for (task_state, n) in &counts.by_state {
                        li { a href={ "/console/tasks?state=" (task_state) } { span .n { (n) } (layout::state(task_state)) } }
                    }
                }
            }
            section aria-labelledby="hour" {
                h2 #hour { "The last hour" }
                (charts(&minutes, at))
            }
            div .columns {
                (count_table("by-tenant", "By tenant", "Tenant", "Tasks", "tenant", &counts.by_tenant))
                (count_table("by-agent", "By agent", "Agent", "Delegated tasks", "agent", &counts.by_agent))
            }
        }
    };
    layout::part_or_page(query.part.is_some(), "Overview", &viewer, Section::Overview, main)
}

/// A section listing counts by a name, each name a link to the task list
/// filtered by it (`filter=name`).
fn count_table(id: &str, title: &str, named: &str, counted: &str, filter: &str, rows: &[(String, i64)]) -> Markup {
    let encode = |v: &str| percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string();
    html! {
        section aria-labelledby=(id) {
            h2 #(id) { (title) }
            table {
                thead { tr { th { (named) } th .num { (counted) } } }
                tbody {
                    @for (name, n) in rows {
                        tr { td { a href={ "/console/tasks?" (filter) "=" (encode(name)) } { (name) } } td .num { (n) } }
                    }
                }
            }
        }
    }
}

/// Tasks ended per minute, and their p50 and p99 durations, over the last
/// hour: two small SVG charts with the figures also given as text.
fn charts(minutes: &[MinuteStat], now: DateTime<Utc>) -> Markup {
    let end = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
    let start = end - TimeDelta::minutes(59);
    let slot = |m: &MinuteStat| usize::try_from((m.minute - start).num_minutes()).ok().filter(|i| *i < 60);
    let mut ended = [0i64; 60];
    let mut p50 = [None::<f64>; 60];
    let mut p99 = [None::<f64>; 60];
    for m in minutes {
        if let Some(i) = slot(m) {
            ended[i] = m.ended;
            p50[i] = Some(m.p50_ms);
            p99[i] = Some(m.p99_ms);
        }
    }
    let total: i64 = ended.iter().sum();
    let max_ended = ended.iter().copied().max().unwrap_or(0).max(1) as f64;
    let max_ms = p99.iter().flatten().copied().fold(1.0, f64::max);
    let (w, h) = (600.0, 80.0);
    let x = |i: usize| i as f64 * w / 60.0;
    let points = |values: &[Option<f64>; 60]| -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (x(i) + 5.0, h - 2.0 - v / max_ms * (h - 6.0))))
            .collect()
    };
    let line =
        |points: &[(f64, f64)]| points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" ");
    let (p50, p99) = (points(&p50), points(&p99));
    let last = minutes.last();
    html! {
        div .charts {
            figure {
                figcaption { "Tasks ended per minute — " (total) " in the hour, peak " (max_ended as i64) }
                svg viewBox={ "0 0 " (w) " " (h) } role="img" aria-label={ (total) " tasks ended in the last hour" } {
                    @for (i, n) in ended.iter().enumerate() {
                        @if *n > 0 {
                            rect .bar x=(format!("{:.1}", x(i) + 1.0)) width=(format!("{:.1}", w / 60.0 - 2.0))
                                y=(format!("{:.1}", h - *n as f64 / max_ended * (h - 4.0)))
                                height=(format!("{:.1}", *n as f64 / max_ended * (h - 4.0))) {
                                title { (n) " ended" }
                            }
                        }
                    }
                }
            }
            figure {
                figcaption {
                    "Task duration, p50 and p99 — "
                    @if let Some(m) = last {
                        "last minute: p50 " (format!("{:.0}", m.p50_ms)) " ms, p99 " (format!("{:.0}", m.p99_ms)) " ms"
                    } @else { "no task ended" }
                }
                svg viewBox={ "0 0 " (w) " " (h) } role="img" aria-label="p50 and p99 task duration by minute" {
                    polyline .p99 points=(line(&p99)) {}
                    polyline .p50 points=(line(&p50)) {}
                    @for (x, y) in &p99 { circle .p99 cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="2" {} }
                    @for (x, y) in &p50 { circle .p50 cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="2" {} }
                }
                p .legend { span .key-p50 { "p50" } " " span .key-p99 { "p99" } " · top of the chart " (format!("{max_ms:.0}")) " ms" }
            }
        }
    }
}
