//! Sources: components that read from the outside world and emit batches.

pub mod checkpoint;
