//! The header chain the tower has processed: what the follower compares with
//! the node's chain to find fork points, and what timing rules read.

use std::collections::BTreeMap;

use bitcoin::BlockHash;
use serde::Serialize;

/// One block of the processed chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HeaderRecord {
    pub height: u32,
    pub hash: BlockHash,
    pub prev: BlockHash,
    pub time: u32,
    /// Median of the timestamps of the 11 blocks ending at this one.
    pub median_time_past: u32,
}

/// How many recent headers stay in memory; deeper forks are read from the store.
pub const WINDOW: usize = 2_016;

/// The most recent part of the processed chain, by height.
#[derive(Debug, Clone, Default)]
pub struct HeaderChain {
    by_height: BTreeMap<u32, HeaderRecord>,
}

impl HeaderChain {
    pub fn from_records(records: impl IntoIterator<Item = HeaderRecord>) -> Self {
        let mut chain = HeaderChain::default();
        for r in records {
            chain.by_height.insert(r.height, r);
        }
        chain.trim();
        chain
    }

    pub fn tip(&self) -> Option<&HeaderRecord> {
        self.by_height.values().next_back()
    }

    pub fn get(&self, height: u32) -> Option<&HeaderRecord> {
        self.by_height.get(&height)
    }

    /// The lowest height still held in memory.
    pub fn lowest(&self) -> Option<u32> {
        self.by_height.keys().next().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.by_height.is_empty()
    }

    /// Appends a block on top of the tip.
    pub fn push(&mut self, record: HeaderRecord) {
        self.by_height.insert(record.height, record);
        self.trim();
    }

    /// Removes the tip.
    pub fn pop(&mut self) -> Option<HeaderRecord> {
        self.by_height.pop_last().map(|(_, r)| r)
    }

    /// The median time past a block with `time` would have on top of the tip.
    pub fn median_time_past_with(&self, time: u32) -> u32 {
        let mut times: Vec<u32> = self.by_height.values().rev().take(10).map(|r| r.time).collect();
        times.push(time);
        median(&mut times)
    }

    fn trim(&mut self) {
        while self.by_height.len() > WINDOW {
            self.by_height.pop_first();
        }
    }
}

/// The median of up to 11 timestamps, as Bitcoin Core's GetMedianTimePast
/// takes it (the upper middle of a sorted list).
pub fn median(times: &mut [u32]) -> u32 {
    if times.is_empty() {
        return 0;
    }
    times.sort_unstable();
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn rec(height: u32, time: u32) -> HeaderRecord {
        HeaderRecord {
            height,
            hash: BlockHash::from_byte_array([height as u8; 32]),
            prev: BlockHash::from_byte_array([height.wrapping_sub(1) as u8; 32]),
            time,
            median_time_past: 0,
        }
    }

    #[test]
    fn median_time_past_uses_the_last_eleven() {
        let mut chain = HeaderChain::default();
        for h in 0..20 {
            chain.push(rec(h, 1000 + h * 10));
        }
        // Last ten are 1100..1190, plus the new 5000: median is 1150.
        assert_eq!(chain.median_time_past_with(5000), 1150);
        let mut one = [7];
        assert_eq!(median(&mut one), 7);
        let mut out_of_order = [5, 1, 3, 2];
        assert_eq!(median(&mut out_of_order), 3);
    }

    #[test]
    fn window_keeps_the_recent_part() {
        let chain = HeaderChain::from_records((0..(WINDOW as u32 + 10)).map(|h| rec(h, h)));
        assert_eq!(chain.lowest(), Some(10));
        assert_eq!(chain.tip().unwrap().height, WINDOW as u32 + 9);
        let mut chain = chain;
        assert_eq!(chain.pop().unwrap().height, WINDOW as u32 + 9);
        assert!(chain.get(WINDOW as u32 + 9).is_none());
    }
}
