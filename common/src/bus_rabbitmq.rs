//! The RabbitMQ backend of the event-bus port.
