//! ID cross-references: which ID a system gave an object (the OMS order ID of a marketplace
//! order), stored when a sink answers and looked up by later flows (the shipment
//! confirmation needs the marketplace's order ID).

use serde::Serialize;

/// One cross-reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrossReference {
    /// The object (`order`).
    pub object: String,
    /// The system that gave the ID (`oms`).
    pub system: String,
    /// That system's ID.
    pub external_id: String,
    /// The object's identity key.
    pub record_key: String,
}
