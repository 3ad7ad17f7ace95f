//! ID cross-references: which ID a system gave an object (the OMS order ID of a marketplace
//! order), stored when a sink answers and looked up by later flows (the shipment
//! confirmation needs the marketplace's order ID).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, now_rfc3339};

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

impl Store {
    /// Stores (or confirms) a cross-reference; the first mapping of an external ID wins.
    pub fn put_xref(&self, xref: &CrossReference, flow: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO xrefs (object, system, external_id, record_key, flow,
                   created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    xref.object,
                    xref.system,
                    xref.external_id,
                    xref.record_key,
                    flow,
                    now_rfc3339()
                ],
            )
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }

    /// The identity key of the object a system knows under `external_id`.
    pub fn xref_key(
        &self,
        object: &str,
        system: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT record_key FROM xrefs WHERE object = ?1 AND system = ?2
                 AND external_id = ?3",
                params![object, system, external_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// Every ID other systems gave one object.
    pub fn xrefs_of(
        &self,
        object: &str,
        record_key: &str,
    ) -> Result<Vec<CrossReference>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT system, external_id FROM xrefs WHERE object = ?1 AND record_key = ?2
                 ORDER BY system",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![object, record_key], |row| {
                Ok(CrossReference {
                    object: object.to_owned(),
                    system: row.get(0)?,
                    external_id: row.get(1)?,
                    record_key: record_key.to_owned(),
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_looks_up_both_ways() {
        let store = Store::in_memory().unwrap();
        let xref = CrossReference {
            object: "order".into(),
            system: "oms".into(),
            external_id: "OMS-1".into(),
            record_key: "MKP-1-A".into(),
        };
        store.put_xref(&xref, "orders").unwrap();
        store
            .put_xref(
                &CrossReference {
                    record_key: "other".into(),
                    ..xref.clone()
                },
                "x",
            )
            .unwrap();
        assert_eq!(
            store.xref_key("order", "oms", "OMS-1").unwrap().as_deref(),
            Some("MKP-1-A")
        );
        assert_eq!(store.xref_key("order", "erp", "OMS-1").unwrap(), None);
        assert_eq!(store.xrefs_of("order", "MKP-1-A").unwrap(), vec![xref]);
    }
}
