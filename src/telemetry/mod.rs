//! Logging and tracing setup: structured logs to stderr, and OpenTelemetry
//! spans exported over OTLP when the standard environment asks for it.
//!
//! The standard variables are honoured as the OpenTelemetry specification
//! defines them:
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL) or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL) turns export on;
//! - `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`: `http/protobuf` (the default),
//!   `http/json` or `grpc`, each as far as this build has it (features
//!   `otlp-http`, `otlp-http-json`, `otlp-grpc`; the first and last are
//!   on by default);
//! - `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`, `…_TIMEOUT` (milliseconds),
//!   `…_COMPRESSION`;
//! - `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the process
//!   (default service name: `switchyard`);
//! - `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` choose the sampler
//!   (default `parentbased_always_on`);
//! - `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_SCHEDULE_DELAY`,
//!   `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` tune the batch queue;
//! - `OTEL_SDK_DISABLED=true` turns everything off.
//!
//! With no endpoint set nothing is exported and no OpenTelemetry layer is
//! installed at all.

mod export;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use export::{Counts, ExportRuntime};

/// Held for the life of the process; flushes spans on shutdown.
#[derive(Debug)]
pub(crate) struct Telemetry {
    export: Option<Export>,
}

#[derive(Debug)]
struct Export {
    provider: SdkTracerProvider,
    runtime: ExportRuntime,
    counts: Arc<Counts>,
}

impl Telemetry {
    /// Exports what is still buffered (bounded by the export timeout), then
    /// says what could not be delivered.
    pub(crate) fn shutdown(self) {
        let Some(export) = self.export else { return };
        if let Err(error) = export.provider.shutdown_with_timeout(Duration::from_secs(15)) {
            eprintln!("switchyard: flushing traces failed: {error}");
        }
        export.runtime.stop();
        let dropped = export.counts.total_dropped();
        if dropped > 0 {
            eprintln!("switchyard: {dropped} spans could not be delivered to the OTLP collector");
        }
    }
}

pub(super) fn env(name: &str) -> Option<String> {
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

/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`,
/// else `http/protobuf`; a value we do not speak is an error, not a guess,
/// and so is a transport this build left out (each is a cargo feature).
fn protocol() -> anyhow::Result<Protocol> {
    let named = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
    let named = named.as_deref().map_or("http/protobuf", str::trim);
    let (protocol, feature) = match named {
        "http/protobuf" => (http_protobuf(), "otlp-http"),
        "http/json" => (http_json(), "otlp-http-json"),
        "grpc" => (grpc(), "otlp-grpc"),
        other => anyhow::bail!("OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not one of grpc, http/protobuf, http/json"),
    };
    protocol.with_context(|| {
        format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={named}: this build has no such exporter (build with --features {feature})"
        )
    })
}

fn http_protobuf() -> Option<Protocol> {
    #[cfg(feature = "otlp-http")]
    return Some(Protocol::HttpBinary);
    #[cfg(not(feature = "otlp-http"))]
    None
}

fn http_json() -> Option<Protocol> {
    #[cfg(feature = "otlp-http-json")]
    return Some(Protocol::HttpJson);
    #[cfg(not(feature = "otlp-http-json"))]
    None
}

fn grpc() -> Option<Protocol> {
    #[cfg(feature = "otlp-grpc")]
    return Some(Protocol::Grpc);
    #[cfg(not(feature = "otlp-grpc"))]
    None
}

/// `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT` in milliseconds (default 10 s).
fn export_timeout() -> Duration {
    env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        .or_else(|| env("OTEL_EXPORTER_OTLP_TIMEOUT"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

fn exporter(protocol: Protocol) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let built: Result<_, opentelemetry_otlp::ExporterBuildError> = match protocol {
        #[cfg(feature = "otlp-grpc")]
        Protocol::Grpc => builder.with_tonic().with_protocol(protocol).build(),
        #[cfg(feature = "otlp-http")]
        _ => builder.with_http().with_protocol(protocol).build(),
    };
    built.context("building the OTLP span exporter")
}

/// Installs the subscriber (and the exporter, when configured).
pub(crate) fn init(format: LogFormat) -> anyhow::Result<Telemetry> {
    // Always W3C trace context (and baggage): stored task contexts are written in it.
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    let wanted = env("OTEL_EXPORTER_OTLP_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")).is_some()
        && !env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let export = if wanted {
        let protocol = protocol()?;
        let runtime = ExportRuntime::start().context("starting the trace export thread")?;
        // tonic's channel is made inside a runtime; the export runtime's.
        let exporter = {
            let _inside = runtime.handle().enter();
            exporter(protocol)?
        };
        let counts = Arc::new(Counts::default());
        let processor = export::pipeline(exporter, &runtime, export_timeout(), export::queue_size(), counts.clone());
        // The default resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
        let mut resource = Resource::builder();
        if env("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("switchyard");
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler())
            .with_resource(resource.build())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        Some(Export { provider, runtime, counts })
    } else {
        None
    };
    // Spans are chosen by their own filter, not by RUST_LOG: quieting the
    // logs must not empty the traces. Our spans and events at INFO and above,
    // the dependencies' warnings.
    let spans = Targets::new().with_default(LevelFilter::WARN).with_targets(
        ["switchyard", "switchyard_api", "switchyard_worker", "switchyard_engine"].map(|t| (t, LevelFilter::INFO)),
    );
    let otel = export
        .as_ref()
        .map(|e| tracing_opentelemetry::layer().with_tracer(e.provider.tracer("switchyard")).with_filter(spans));
    let logs = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(otel);
    match format {
        LogFormat::Text => {
            registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(logs)).init();
        }
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(std::io::stderr)
                    .with_filter(logs),
            )
            .init(),
    }
    Ok(Telemetry { export })
}
