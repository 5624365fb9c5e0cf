//! Conversions between `prost_types::Timestamp` and `chrono`.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

pub fn to_timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        // Always in 0..1_000_000_000, so the cast cannot truncate.
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// `None` for a timestamp outside chrono's range.
pub fn from_timestamp(t: &Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_nanosecond() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(from_timestamp(&to_timestamp(t)), Some(t));
    }

    #[test]
    fn negative_nanos_are_rejected() {
        let t = Timestamp {
            seconds: 1,
            nanos: -1,
        };
        assert_eq!(from_timestamp(&t), None);
    }
}
