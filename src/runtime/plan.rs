//! The compiled flow the runtime executes. It is built once per workspace load by the spec's
//! compiled phase ([`crate::spec::compiled`]) and shared by every run through the resolved
//! [`Flow`](crate::spec::model::Flow): the runtime never compiles a flow itself.

pub use crate::spec::compiled::{DeadlinePlan, FlowPlan, LookupPlan, PlanError};
