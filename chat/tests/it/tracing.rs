//! OpenTelemetry traces end to end: a `send` over a real WebSocket, with
//! the process exporting spans over OTLP to a receiver in this test, is one
//! trace from the gateway's frame through message-service, its store calls
//! and outbox relay, to presence-service's event consumer, each span the
//! child of exactly the span that caused it.
//!
//! The tracer provider is global to a process, so each case needs a process
//! of its own (as nextest runs them).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_common::telemetry::{Telemetry, TracingConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::support::{Deployment, TestSystem, WAIT};

/// An OTLP/gRPC collector keeping every span it is sent, with the
/// `service.name` of its resource.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| string_attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                spans.extend(scope_spans.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

/// Starts a receiver on port 0 and makes this process export to it.
async fn export_to_receiver() -> anyhow::Result<(Receiver, Telemetry)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let receiver = Receiver::default();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(receiver.clone()))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    let telemetry = chat_common::telemetry::init_with(&TracingConfig {
        otlp_endpoint: Some(format!("http://{addr}")),
        service_name: "chat-under-test".into(),
    });
    anyhow::ensure!(
        telemetry.exporting(),
        "another test of this process installed the subscriber first; run each test in its own process (cargo nextest)"
    );
    Ok((receiver, telemetry))
}

/// A span as the assertions need it.
#[derive(Debug, Clone)]
struct Seen {
    service: String,
    name: String,
    target: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: Vec<KeyValue>,
}

impl Seen {
    fn is_child_of(&self, parent: &Seen) -> bool {
        self.trace_id == parent.trace_id && self.parent_span_id == parent.span_id
    }
}

/// The spans of one send, each found by name and the crate it comes from.
#[derive(Debug)]
struct SendTrace {
    frame: Seen,
    grpc_server: Seen,
    handler: Seen,
    batch: Seen,
    insert_outbox: Seen,
    relay: Seen,
    consumer: Seen,
}

fn find_send_trace(spans: &[Seen]) -> Option<SendTrace> {
    let one = |pred: &dyn Fn(&Seen) -> bool| spans.iter().find(|s| pred(s)).cloned();
    let frame = one(&|s| {
        s.name == "ws.frame"
            && s.target.starts_with("chat_gateway")
            && string_attribute(&s.attributes, "frame").as_deref() == Some("send")
    })?;
    let grpc_server = one(&|s| {
        s.name == "chat.message.v1.MessageService/SendMessage" && s.trace_id == frame.trace_id
    })?;
    let handler = one(&|s| {
        s.name == "send"
            && s.target.starts_with("chat_message_service")
            && s.trace_id == frame.trace_id
    })?;
    let batch = one(&|s| s.name == "send_batch" && s.trace_id == frame.trace_id)?;
    let insert_outbox = one(&|s| s.name == "insert_outbox_rows" && s.trace_id == frame.trace_id)?;
    let relay = one(&|s| s.name == "outbox.publish" && s.trace_id == frame.trace_id)?;
    let consumer = one(&|s| {
        s.name == "notifications.handle"
            && s.target.starts_with("chat_presence_service")
            && s.trace_id == frame.trace_id
    })?;
    Some(SendTrace {
        frame,
        grpc_server,
        handler,
        batch,
        insert_outbox,
        relay,
        consumer,
    })
}

async fn a_send_is_one_trace_from_frame_to_consumer(deployment: Deployment) -> anyhow::Result<()> {
    let (receiver, telemetry) = export_to_receiver().await?;
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    let mut ws = t.ws(&alice).await?;
    let ack = ws
        .request(json!({"type": "send", "room": room, "text": "hi @bob", "client_msg_id": "t1"}))
        .await?;
    anyhow::ensure!(ack["type"] == "ack", "send not acked: {ack}");

    // The consumer's span ends after the ack, once the event went through
    // the outbox and the bus: export until every span has arrived.
    let deadline = tokio::time::Instant::now() + WAIT;
    let trace = loop {
        telemetry.flush().await;
        let spans: Vec<Seen> = receiver
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(service, span)| Seen {
                service: service.clone(),
                name: span.name.clone(),
                target: string_attribute(&span.attributes, "target").unwrap_or_default(),
                trace_id: span.trace_id.clone(),
                span_id: span.span_id.clone(),
                parent_span_id: span.parent_span_id.clone(),
                attributes: span.attributes.clone(),
            })
            .collect();
        if let Some(trace) = find_send_trace(&spans) {
            break trace;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the send's trace is incomplete; spans received: {:#?}",
            spans
                .iter()
                .map(|s| (
                    &s.name,
                    hex::encode(&s.trace_id),
                    hex::encode(&s.span_id),
                    hex::encode(&s.parent_span_id)
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    assert!(
        trace.frame.parent_span_id.is_empty(),
        "a frame starts its own trace"
    );
    assert_eq!(trace.frame.trace_id.len(), 16);
    assert!(
        trace.grpc_server.is_child_of(&trace.frame),
        "message-service's call span is the child of the gateway's frame span: {trace:#?}"
    );
    assert!(
        trace.handler.is_child_of(&trace.grpc_server),
        "the handler runs in the call's span: {trace:#?}"
    );
    assert!(
        trace.batch.is_child_of(&trace.handler),
        "the send's batch (group commit) is a child of the handler: {trace:#?}"
    );
    assert!(
        trace.insert_outbox.is_child_of(&trace.batch),
        "the batch's store calls are children of the batch: {trace:#?}"
    );
    assert!(
        trace.relay.is_child_of(&trace.handler),
        "the outbox row carries the handler's context to the relay: {trace:#?}"
    );
    assert!(
        trace.consumer.is_child_of(&trace.relay),
        "the bus message carries the relay's context to the consumer: {trace:#?}"
    );
    assert_eq!(trace.consumer.service, "chat-under-test");

    t.stop().await?;
    telemetry.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn embedded_send_is_one_trace() -> anyhow::Result<()> {
    a_send_is_one_trace_from_frame_to_consumer(Deployment::Embedded).await
}

/// Over RabbitMQ, PostgreSQL and Redis, with two gateway replicas.
#[tokio::test]
async fn replicated_send_is_one_trace() -> anyhow::Result<()> {
    crate::support::replicated(
        "replicated_send_is_one_trace",
        a_send_is_one_trace_from_frame_to_consumer,
    )
    .await
}
