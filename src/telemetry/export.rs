//! The path a finished span takes out of the process, built so that a
//! collector that is down, slow or refusing costs the broker nothing.
//!
//! The SDK's batch processor runs on a thread of its own and drives each
//! export with a plain executor, which has no Tokio reactor: an exporter that
//! needs one (the async HTTP client, tonic for gRPC) panics there. So every
//! export is handed to a small Tokio runtime on a dedicated thread, which
//! also keeps a slow collector's sockets and timers off the broker's runtime.
//!
//! The queue in front of it is bounded by [`Bounded`], which counts what it
//! drops: the SDK drops silently when its queue is full, and a failed export
//! loses its batch just as silently. Both show up as
//! `switchyard_trace_spans_dropped_total{reason}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// Spans dropped because the export queue was full.
const QUEUE_FULL: &str = "queue_full";
/// Spans dropped because the collector did not take their batch.
const EXPORT_FAILED: &str = "export_failed";

/// What the pipeline has let go of, kept here as well as in the metric so
/// the shutdown report can say it.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Spans handed to the batch processor and not yet exported or dropped.
    in_flight: AtomicUsize,
    queue_full: AtomicU64,
    export_failed: AtomicU64,
}

impl Counts {
    fn dropped(&self, reason: &'static str, count: usize) {
        let counter = if reason == QUEUE_FULL { &self.queue_full } else { &self.export_failed };
        counter.fetch_add(count as u64, Ordering::Relaxed);
        metrics::counter!("switchyard_trace_spans_dropped_total", "reason" => reason).increment(count as u64);
    }

    /// Spans dropped so far, for whatever reason.
    pub(crate) fn total_dropped(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed) + self.export_failed.load(Ordering::Relaxed)
    }
}

/// A current-thread Tokio runtime on its own thread, for exports only.
#[derive(Debug)]
pub(crate) struct ExportRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ExportRuntime {
    pub(crate) fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // The runtime moves to its thread and is dropped there, outside any
        // async context (dropping it inside one panics).
        let thread = std::thread::Builder::new().name("otlp-export".into()).spawn(move || {
            runtime.block_on(async move {
                let _ = stopped.await;
            });
        })?;
        Ok(Self { handle, stop: Some(stop), thread: Some(thread) })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Stops the runtime once the exporter has flushed.
    pub(crate) fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs an exporter's futures on the export runtime, bounds each export by
/// `timeout`, and counts what it could not deliver.
#[derive(Debug)]
pub(crate) struct OnRuntime<E> {
    inner: Arc<E>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
    counts: Arc<Counts>,
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len();
        let inner = self.inner.clone();
        let timeout = self.timeout;
        let exported = self.runtime.spawn(async move {
            tokio::time::timeout(timeout, inner.export(batch)).await.unwrap_or(Err(OTelSdkError::Timeout(timeout)))
        });
        let result = exported.await.unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string())));
        self.counts.in_flight.fetch_sub(count, Ordering::AcqRel);
        match &result {
            Ok(()) => metrics::counter!("switchyard_trace_spans_exported_total").increment(count as u64),
            Err(_) => self.counts.dropped(EXPORT_FAILED, count),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called once, while the provider is built and before any export
        // holds a clone of `inner`.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// Puts a bound of its own, with a count of what it drops, in front of a
/// processor whose queue would otherwise drop without a trace.
#[derive(Debug)]
pub(crate) struct Bounded<P> {
    inner: P,
    capacity: usize,
    counts: Arc<Counts>,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        // Never blocks: a span either has room or is counted and let go.
        if self.counts.in_flight.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.counts.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.counts.dropped(QUEUE_FULL, 1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// An exporter on the export runtime behind a bounded, counted queue.
pub(crate) fn pipeline<E: SpanExporter + 'static>(
    exporter: E,
    runtime: &ExportRuntime,
    timeout: Duration,
    capacity: usize,
    counts: Arc<Counts>,
) -> Bounded<opentelemetry_sdk::trace::BatchSpanProcessor> {
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor};

    let exporter =
        OnRuntime { inner: Arc::new(exporter), runtime: runtime.handle().clone(), timeout, counts: counts.clone() };
    // The SDK's own queue gets room to spare, so the bound that drops is ours
    // and is counted: spans being exported still count against ours.
    let config = BatchConfigBuilder::default().with_max_queue_size(capacity * 2).build();
    let inner = BatchSpanProcessor::builder(exporter).with_batch_config(config).build();
    Bounded { inner, capacity, counts }
}

/// `OTEL_BSP_MAX_QUEUE_SIZE`, as the SDK reads it (default 2,048).
pub(crate) fn queue_size() -> usize {
    super::env("OTEL_BSP_MAX_QUEUE_SIZE")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(opentelemetry_sdk::trace::OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Span as _, Tracer, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// An exporter that never answers: the collector hangs.
    #[derive(Debug)]
    struct Hanging;

    impl SpanExporter for Hanging {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            std::future::pending().await
        }
    }

    #[test]
    fn a_hanging_collector_costs_dropped_spans_not_a_blocked_caller() {
        let runtime = ExportRuntime::start().expect("runtime");
        let counts = Arc::new(Counts::default());
        let processor = pipeline(Hanging, &runtime, Duration::from_millis(50), 100, counts.clone());
        let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
        let tracer = provider.tracer("test");
        for _ in 0..5_000 {
            tracer.start("work").end();
        }
        assert!(
            counts.queue_full.load(Ordering::Relaxed) > 0,
            "past the bound spans are dropped and counted, not queued"
        );
        assert!(counts.in_flight.load(Ordering::Relaxed) <= 100, "the bound holds");
        // Shutdown still returns: each export is cut off at its timeout, and
        // what it carried is counted as lost.
        let _ = provider.shutdown_with_timeout(Duration::from_secs(10));
        assert!(counts.export_failed.load(Ordering::Relaxed) > 0, "timed-out exports are counted");
        runtime.stop();
    }
}
