//! Group commit of sends. A send waits in a queue; a worker takes every
//! send queued meanwhile (up to [`MAX_BATCH`]) into one transaction, checks
//! and writes them set-based (a few statements for the whole batch, see
//! [`send_batch_in_tx`]) and commits them with one commit, one disk flush
//! for the batch instead of one per message. Then it publishes the created
//! messages' events in seq order and answers each caller.
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
use crate::api::messages::{SendCall, Sent, send_batch_in_tx};
use crate::domain::validate::ClientMsgId;
use crate::error::Error;
use crate::events;
use crate::state::{RoomLocks, State};

/// The most sends one transaction holds: enough to pay for the commit many
/// times over, few enough that the first of them is not kept waiting long.
pub const MAX_BATCH: usize = 128;

/// Sends waiting per worker before callers wait to queue (back-pressure).
const QUEUE: usize = 4 * MAX_BATCH;

/// Attempts of a batch that lost a `client_msg_id` race to another replica:
/// the next attempt reads that send's message and answers it as a
/// duplicate, so a second loss needs a third replica's race.
const ATTEMPTS: usize = 3;

/// A send's outcome as its caller gets it.
pub enum Outcome {
    Created(pb::Message),
    Duplicate(pb::Message),
}

struct Job {
    call: SendCall,
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
            call: SendCall {
                who,
                req,
                client_msg_id,
                span: tracing::Span::current(),
            },
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
    jobs.sort_by(|a, b| a.call.req.room.cmp(&b.call.req.room));
    // The batch's statements belong to every send in it: the span is the
    // first send's child and linked from the others.
    let span = match jobs.first() {
        Some(first) => {
            tracing::debug_span!(parent: &first.call.span, "send_batch", sends = jobs.len())
        }
        None => return,
    };
    chat_common::trace_context::link(&span, jobs.iter().skip(1).map(|job| &job.call.span));
    // Held until the events are published, so a room's events leave in
    // seq order, also relative to its edits and recalls.
    let _order = state
        .room_locks
        .lock_all(jobs.iter().map(|job| job.call.req.room.as_str()))
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
                    &job.call.req.room,
                    room_event::Event::MessageCreated(message.clone()),
                )
                .instrument(job.call.span.clone())
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
    let calls: Vec<&SendCall> = jobs.iter().map(|job| &job.call).collect();
    let mut attempt = 1;
    loop {
        let mut tx = state.store.begin().await?;
        match send_batch_in_tx(state, tx.as_mut(), &calls).await {
            Ok(results) => {
                tx.commit().await?;
                return Ok(results);
            }
            // Another replica committed one of these client_msg_ids since
            // it was read: nothing of this attempt stays, the next one
            // answers that send as a duplicate.
            Err(Error::Conflict(_)) if attempt < ATTEMPTS => attempt += 1,
            Err(error) => return Err(error),
        }
    }
}
