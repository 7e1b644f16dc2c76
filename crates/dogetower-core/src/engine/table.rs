//! The tracked channels: one vector of channels and a small index from the
//! store's key to a slot. A `HashMap<i64, TrackedChannel>` held each channel
//! in a bucket of its own size at a load factor near one half, about 1.1 KB
//! per channel at a million; here a channel costs its size plus one index
//! entry. The engine never forgets a channel while it runs (a finished one
//! is only left out at the next start), so slots are never freed.

use std::collections::HashMap;

use super::channel::TrackedChannel;

#[derive(Debug, Default)]
pub(super) struct ChannelTable {
    channels: Vec<TrackedChannel>,
    slots: HashMap<i64, u32>,
}

impl ChannelTable {
    pub(super) fn get(&self, key: &i64) -> Option<&TrackedChannel> {
        self.slots.get(key).map(|slot| &self.channels[*slot as usize])
    }

    pub(super) fn get_mut(&mut self, key: &i64) -> Option<&mut TrackedChannel> {
        self.slots.get(key).map(|slot| &mut self.channels[*slot as usize])
    }

    /// Adds a channel, or replaces the one with the same key.
    pub(super) fn insert(&mut self, channel: TrackedChannel) {
        match self.slots.get(&channel.key) {
            Some(slot) => self.channels[*slot as usize] = channel,
            None => {
                let slot = u32::try_from(self.channels.len()).expect("fewer than 2^32 channels");
                self.slots.insert(channel.key, slot);
                self.channels.push(channel);
            }
        }
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &TrackedChannel> {
        self.channels.iter()
    }
}

impl std::ops::Index<&i64> for ChannelTable {
    type Output = TrackedChannel;

    fn index(&self, key: &i64) -> &TrackedChannel {
        self.get(key).expect("a tracked channel")
    }
}

impl From<Vec<TrackedChannel>> for ChannelTable {
    /// Takes the vector as the table, without copying a channel.
    fn from(channels: Vec<TrackedChannel>) -> ChannelTable {
        let mut slots = HashMap::with_capacity(channels.len());
        let mut repeated = false;
        for (slot, channel) in channels.iter().enumerate() {
            let slot = u32::try_from(slot).expect("fewer than 2^32 channels");
            repeated |= slots.insert(channel.key, slot).is_some();
        }
        if repeated {
            // Not what the store gives; keep the last of each key.
            let mut table = ChannelTable::default();
            for channel in channels {
                table.insert(channel);
            }
            return table;
        }
        ChannelTable { channels, slots }
    }
}
