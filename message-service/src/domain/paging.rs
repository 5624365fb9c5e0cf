//! History paging (PROTOCOL "History paging"): with `before`, the latest
//! `limit` messages with `seq < before`; with `after`, the first `limit`
//! with `seq > after`; with neither, the latest `limit`. Always ascending;
//! `has_more` exactly when more exist beyond the page in its direction.

use crate::error::Error;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Descending from below this seq.
    Before(i64),
    /// Ascending from above this seq.
    After(i64),
    /// Descending from the latest.
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub direction: Direction,
    pub limit: i64,
}

impl Page {
    pub fn parse(before: Option<i64>, after: Option<i64>, limit: u32) -> Result<Page, Error> {
        let limit = match limit {
            0 => DEFAULT_LIMIT,
            l if l > MAX_LIMIT => {
                return Err(Error::invalid("limit must be 1 to 1000"));
            }
            l => l,
        };
        let direction = match (before, after) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid("give before or after, not both"));
            }
            (Some(before), None) => Direction::Before(before),
            (None, Some(after)) => Direction::After(after),
            (None, None) => Direction::Latest,
        };
        Ok(Page {
            direction,
            limit: i64::from(limit),
        })
    }

    /// How many rows to read, in the direction's natural order: one more
    /// than the page, to learn whether more exist.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Turns the fetched rows (in the direction's natural order) into the
    /// ascending page and `has_more`.
    pub fn finish<T>(&self, mut rows: Vec<T>) -> (Vec<T>, bool) {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        if !matches!(self.direction, Direction::After(_)) {
            rows.reverse();
        }
        (rows, has_more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_directions() {
        assert_eq!(Page::parse(None, None, 0).map(|p| p.limit).ok(), Some(50));
        assert_eq!(
            Page::parse(None, None, 1000).map(|p| p.limit).ok(),
            Some(1000)
        );
        assert!(Page::parse(None, None, 1001).is_err());
        assert!(Page::parse(Some(1), Some(2), 10).is_err());
        assert_eq!(
            Page::parse(Some(7), None, 10).map(|p| p.direction).ok(),
            Some(Direction::Before(7))
        );
    }

    #[test]
    fn pages_come_out_ascending() -> Result<(), Error> {
        let before = Page::parse(Some(10), None, 3)?;
        assert_eq!(before.finish(vec![9, 8, 7, 6]), (vec![7, 8, 9], true));
        assert_eq!(before.finish(vec![2, 1]), (vec![1, 2], false));
        let after = Page::parse(None, Some(4), 2)?;
        assert_eq!(after.finish(vec![5, 6]), (vec![5, 6], false));
        assert_eq!(after.finish(vec![5, 6, 7]), (vec![5, 6], true));
        Ok(())
    }
}
