//! The model lifecycle, as pure logic with no Kafka in it: when to retrain (triggers), how a
//! challenger is judged against the champion on live labels (the sequential gate), the figures
//! a decision rests on (evidence), and the decisions themselves as values.

pub mod calibration;
pub mod estimate;
pub mod evidence;
pub mod fairness;
pub mod gate;
pub mod groups;
pub mod outcome;
pub mod sequence;
pub mod triggers;

pub use evidence::Evidence;
pub use outcome::{Decided, GateOutcome, RetrainOutcome};
pub use triggers::{Fired, TriggerKind};
