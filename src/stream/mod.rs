//! What flows on the topics and the machinery around it: the JSON messages, the decoding of a
//! request into a dead letter's reason, and the one consume loop the services run.

mod batch;
pub mod dead_letter;
pub mod decode;
pub mod messages;
mod pipeline;
mod transactional;
mod watchdog;
pub mod worker;
