//! `Sample`: one timestamped reading of a machine's channels, already in a model's channel order.

/// Where a sample came from in Kafka, so the archive and offset commits can refer back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePosition {
    pub partition: i32,
    pub offset: i64,
}

/// One reading of one machine: `values[c]` is channel `c` of the model's channel list, `None` when
/// the channel was missing or null (masked, never treated as zero). Values are finite.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Event time, milliseconds since the Unix epoch (UTC).
    pub ts_ms: i64,
    pub values: Vec<Option<f32>>,
    /// The Kafka message this sample came from; `None` in replay.
    pub source: Option<SourcePosition>,
}

impl SourcePosition {
    /// Adds `position` to a list of the oldest position per partition.
    pub fn keep_oldest(oldest: &mut Vec<SourcePosition>, position: SourcePosition) {
        match oldest
            .iter_mut()
            .find(|p| p.partition == position.partition)
        {
            Some(p) => p.offset = p.offset.min(position.offset),
            None => oldest.push(position),
        }
    }
}
