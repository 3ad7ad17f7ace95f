//! ID cross-references: which ID a system gave an object (the OMS order ID of a marketplace
//! order), stored when a sink answers and looked up by later flows (the shipment
//! confirmation needs the marketplace's order ID).

use rusqlite::{OptionalExtension, params};

use super::Db;
use crate::store::{CrossReference, StoreError, now_rfc3339};

impl Db {
    /// Stores (or confirms) a cross-reference; the first mapping of an external ID wins.
    pub(super) fn put_xref(&self, xref: &CrossReference, flow: &str) -> Result<(), StoreError> {
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
    pub(super) fn xref_key(
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
    pub(super) fn xrefs_of(
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
