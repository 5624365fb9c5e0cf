//! Contract suites for the pub/sub and event-bus ports. Each suite takes a
//! backend and asserts the behaviour every backend must share; each backend
//! gets one test calling it.

mod bus_contract;
mod pubsub_contract;
