//! Running a pipeline: bounded buffers, fanouts, component tasks, shutdown.
//!
//! Invariants:
//! - Every edge is a `buffer::BufferSender`/`BufferReceiver` pair bounded in
//!   events; nothing between a source and a sink is unbounded.
//! - Only sources watch the shutdown token; everything else stops when its
//!   input closes, so data drains in order.
//! - Every spawned component task is owned by `running::RunningTopology`,
//!   which awaits it or, after the deadline, aborts and names it.

pub mod buffer;
pub mod component;
pub mod fanout;
pub mod running;

pub use component::{
    BuildContext, BuildError, ComponentError, ComponentFuture, FunctionTransform, Sink, SinkContext, Source,
    SourceContext, TaskTransform, Transform, TransformContext, TransformOutputBuffer, TransformOutputs,
};
pub use running::{RunningTopology, StopReport};
