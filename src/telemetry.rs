//! Logging and tracing setup: structured logs to stderr, and OpenTelemetry
//! spans exported over OTLP when the standard environment asks for it.
//!
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) turns export on;
//! `OTEL_SERVICE_NAME` names the process (default `switchyard`);
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` choose the sampler
//! (default `parentbased_always_on`). With none of them set nothing is
//! exported and no OpenTelemetry layer is installed at all.

use anyhow::Context;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;

/// Held for the life of the process; flushes spans on shutdown.
#[derive(Debug)]
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is still buffered.
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("switchyard: flushing traces failed: {error}");
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The sampler the standard variables ask for.
fn sampler() -> Sampler {
    let ratio = || env("OTEL_TRACES_SAMPLER_ARG").and_then(|r| r.parse::<f64>().ok()).unwrap_or(1.0).clamp(0.0, 1.0);
    match env("OTEL_TRACES_SAMPLER").as_deref() {
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("traceidratio") => Sampler::TraceIdRatioBased(ratio()),
        Some("parentbased_always_off") => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        Some("parentbased_traceidratio") => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()))),
        _ => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
    }
}

/// Installs the subscriber (and the exporter, when configured).
pub(crate) fn init(format: LogFormat) -> anyhow::Result<Telemetry> {
    // Always W3C trace context (and baggage): stored task contexts are written in it.
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    let export = env("OTEL_EXPORTER_OTLP_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")).is_some()
        && env("OTEL_SDK_DISABLED").as_deref() != Some("true");
    let provider = if export {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .context("building the OTLP span exporter")?;
        let mut resource = Resource::builder();
        if env("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("switchyard");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler())
            .with_resource(resource.build())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        Some(provider)
    } else {
        None
    };
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("switchyard")));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    match format {
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_current_span(true).with_writer(std::io::stderr))
            .init(),
    }
    Ok(Telemetry { provider })
}
