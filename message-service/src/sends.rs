//! Group commit of sends. A send waits in a queue; a worker takes every
//! send queued meanwhile (up to [`MAX_BATCH`]) into one transaction, each
//! inside its own savepoint so that one send's refusal (not a member,
//! muted, a bad `reply_to`) rolls back only that send, and commits them
//! with one commit, one disk flush for the batch instead of one per
//! message. Then it publishes the created messages' events in seq order and
//! answers each caller.
//!
//! A room's sends always go to the same worker (by the room's lock stripe),
//! so they commit and publish in arrival order. A worker sorts its batch by
//! room, keeping each room's order, and locks the rooms' rows in that order
//! in every transaction, so batches of two message-service replicas cannot
//! deadlock in the database.

use chat_common::Shutdown;
use chat_common::identity::Identity;
use chat_proto::events::v1::room_event;
use chat_proto::message::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::api::convert;
use crate::api::messages::{Sent, send_in_tx};
use crate::domain::validate::ClientMsgId;
use crate::error::Error;
use crate::events;
use crate::state::{RoomLocks, State};
use crate::store::StoreTx;

/// The most sends one transaction holds: enough to pay for the commit many
/// times over, few enough that the first of them is not kept waiting long.
pub const MAX_BATCH: usize = 128;

/// Sends waiting per worker before callers wait to queue (back-pressure).
const QUEUE: usize = 4 * MAX_BATCH;

/// A send's outcome as its caller gets it.
pub enum Outcome {
    Created(pb::Message),
    Duplicate(pb::Message),
}

struct Job {
    who: Identity,
    req: pb::SendMessageRequest,
    client_msg_id: ClientMsgId,
    /// The caller's span: the send's statements are traced under it.
    span: tracing::Span,
    reply: oneshot::Sender<Result<Outcome, Error>>,
}

/// Where sends are queued for their worker.
pub struct SendQueue {
    workers: Vec<mpsc::Sender<Job>>,
}

/// The receiving ends of a [`SendQueue`], until the workers are spawned.
pub struct Workers(Vec<mpsc::Receiver<Job>>);

impl SendQueue {
    /// A queue for `workers` workers (at least one): as many transactions
    /// of sends may be open at once.
    pub fn new(workers: usize) -> (SendQueue, Workers) {
        let (senders, receivers) = (0..workers.max(1)).map(|_| mpsc::channel(QUEUE)).unzip();
        (SendQueue { workers: senders }, Workers(receivers))
    }

    /// Queues a validated send and waits for its outcome.
    pub async fn send(
        &self,
        who: Identity,
        req: pb::SendMessageRequest,
        client_msg_id: ClientMsgId,
    ) -> Result<Outcome, Error> {
        let worker = &self.workers[RoomLocks::stripe(&req.room) % self.workers.len()];
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            who,
            req,
            client_msg_id,
            span: tracing::Span::current(),
            reply,
        };
        let stopped = || Error::Unavailable("message-service is stopping, try again".into());
        worker.send(job).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

impl Workers {
    /// Runs the workers until `stop` is cancelled; each finishes the batch
    /// it holds first. Sends still queued then are answered `unavailable`.
    pub fn spawn(self, state: std::sync::Arc<State>, stop: Shutdown) -> tokio::task::JoinSet<()> {
        let mut tasks = tokio::task::JoinSet::new();
        for queue in self.0 {
            tasks.spawn(run(state.clone(), queue, stop.clone()));
        }
        tasks
    }
}

async fn run(state: std::sync::Arc<State>, mut queue: mpsc::Receiver<Job>, stop: Shutdown) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = tokio::select! {
            // Queued sends first: a stop lets the current batch finish.
            biased;
            n = queue.recv_many(&mut batch, MAX_BATCH) => n,
            () = stop.cancelled() => 0,
        };
        if received == 0 {
            return;
        }
        commit_batch(&state, std::mem::take(&mut batch)).await;
    }
}

async fn commit_batch(state: &State, mut jobs: Vec<Job>) {
    // Stable: each room's sends keep their arrival order.
    jobs.sort_by(|a, b| a.req.room.cmp(&b.req.room));
    let span = tracing::debug_span!("send_batch", sends = jobs.len());
    // Held until the events are published, so a room's events leave in
    // seq order, also relative to its edits and recalls.
    let _order = state
        .room_locks
        .lock_all(jobs.iter().map(|job| job.req.room.as_str()))
        .await;
    let results = match in_one_transaction(state, &jobs).instrument(span).await {
        Ok(results) => {
            metrics::histogram!(crate::metrics::SEND_BATCH).record(jobs.len() as f64);
            results
        }
        Err(error) => {
            // Nothing of the batch was committed: every send gets the
            // error, the client retries with the same client_msg_id.
            tracing::warn!(error = %error, sends = jobs.len(), "a batch of sends failed");
            jobs.iter()
                .map(|_| Err(error.for_each_of_batch()))
                .collect()
        }
    };
    let mut created_any = false;
    for (job, result) in jobs.into_iter().zip(results) {
        let outcome = match result {
            Ok(Sent::Created(message)) => {
                created_any = true;
                let message = convert::message(&message);
                events::publish_room(
                    &state.backends,
                    &job.req.room,
                    room_event::Event::MessageCreated(message.clone()),
                )
                .instrument(job.span.clone())
                .await;
                Ok(Outcome::Created(message))
            }
            Ok(Sent::Duplicate(message)) => Ok(Outcome::Duplicate(convert::message(&message))),
            Err(error) => Err(error),
        };
        // A caller that went away (its call was cancelled) needs no answer:
        // its retry finds the message by client_msg_id.
        let _ = job.reply.send(outcome);
    }
    if created_any {
        state.outbox_wake.notify_one();
    }
}

/// Every job's result; `Err` when the transaction itself failed.
async fn in_one_transaction(
    state: &State,
    jobs: &[Job],
) -> Result<Vec<Result<Sent, Error>>, Error> {
    let mut tx = state.store.begin().await?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let result = one_send(state, tx.as_mut(), job)
            .instrument(job.span.clone())
            .await?;
        results.push(result);
    }
    tx.commit().await?;
    Ok(results)
}

/// One send inside its savepoint. The outer `Err` fails the transaction
/// (the database is gone, say); the inner one is this send's refusal.
async fn one_send(
    state: &State,
    tx: &mut dyn StoreTx,
    job: &Job,
) -> Result<Result<Sent, Error>, Error> {
    tx.savepoint().await?;
    let mut result = send_in_tx(state, tx, &job.who, &job.req, &job.client_msg_id).await;
    if matches!(result, Err(Error::Conflict(_))) {
        // A concurrent send with the same client_msg_id (another replica)
        // committed first: this one is undone and finds that message.
        tx.rollback_to_savepoint().await?;
        result = send_in_tx(state, tx, &job.who, &job.req, &job.client_msg_id).await;
    }
    match result {
        Ok(sent) => {
            tx.release_savepoint().await?;
            Ok(Ok(sent))
        }
        Err(error) => match tx.rollback_to_savepoint().await {
            Ok(()) => Ok(Err(error)),
            // The transaction is unusable (the connection broke, say).
            Err(_) => Err(error),
        },
    }
}
