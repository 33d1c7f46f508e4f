//! `gridcase.admin.v1.ReferenceService`: which reference data this server
//! runs with, and a dry run of new files before they are rolled out.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use gridcase_grpc::{Access, Violations};
use gridcase_proto::admin::v1::{self as api, reference_service_server::ReferenceService};
use gridcase_reference::{Reference, ReferenceError, Registry, Taxonomy, sha256_hex};
use tonic::{Request, Response, Status};
use tracing::info;

pub struct ReferenceApi {
    pub(crate) reference: Arc<Reference>,
}

/// What a registry, a taxonomy and their digests add up to.
fn summary(
    registry: &Registry,
    taxonomy: &Taxonomy,
    regions_sha256: &str,
    categories_sha256: &str,
) -> api::ReferenceSummary {
    api::ReferenceSummary {
        regions: registry.len() as u32,
        grids: registry.grids().count() as u32,
        categories: taxonomy.len() as u32,
        regions_sha256: regions_sha256.to_owned(),
        categories_sha256: categories_sha256.to_owned(),
    }
}

/// (added, removed) between two sorted sets of codes.
fn difference(before: BTreeSet<String>, after: BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    (after.difference(&before).cloned().collect(), before.difference(&after).cloned().collect())
}

/// INVALID_ARGUMENT naming the field, the line and the problem.
fn invalid(field: &str, error: ReferenceError) -> Status {
    let mut v = Violations::new();
    v.add(field, "MALFORMED", error.to_string());
    v.into_status()
}

fn text<'a>(field: &str, bytes: &'a [u8]) -> Result<&'a str, Status> {
    std::str::from_utf8(bytes).map_err(|_| {
        let mut v = Violations::new();
        v.add(field, "MALFORMED", "must be UTF-8 CSV");
        v.into_status()
    })
}

#[tonic::async_trait]
impl ReferenceService for ReferenceApi {
    async fn get_reference(
        &self,
        request: Request<api::GetReferenceRequest>,
    ) -> Result<Response<api::ReferenceSummary>, Status> {
        Access::of(&request)?;
        let r = &self.reference;
        Ok(Response::new(summary(&r.registry, &r.taxonomy, &r.regions_sha256, &r.categories_sha256)))
    }

    async fn validate_reference(
        &self,
        request: Request<api::ValidateReferenceRequest>,
    ) -> Result<Response<api::ReferenceChanges>, Status> {
        let access = Access::of(&request)?.clone();
        let r = request.into_inner();
        let running = &self.reference;
        let registry = match r.regions_csv.as_slice() {
            [] => None,
            bytes => Some(
                Registry::parse(Path::new(Reference::REGIONS_FILE), text("regions_csv", bytes)?)
                    .map_err(|e| invalid("regions_csv", e))?,
            ),
        };
        let taxonomy = match r.categories_csv.as_slice() {
            [] => None,
            bytes => Some(
                Taxonomy::parse(Path::new(Reference::CATEGORIES_FILE), text("categories_csv", bytes)?)
                    .map_err(|e| invalid("categories_csv", e))?,
            ),
        };
        let regions_sha256 =
            if r.regions_csv.is_empty() { running.regions_sha256.clone() } else { sha256_hex(&r.regions_csv) };
        let categories_sha256 =
            if r.categories_csv.is_empty() { running.categories_sha256.clone() } else { sha256_hex(&r.categories_csv) };
        let (new_registry, new_taxonomy) =
            (registry.as_ref().unwrap_or(&running.registry), taxonomy.as_ref().unwrap_or(&running.taxonomy));
        let codes = |registry: &Registry| registry.regions().map(|r| r.code.clone()).collect::<BTreeSet<_>>();
        let categories = |taxonomy: &Taxonomy| taxonomy.iter().map(|c| c.code.to_string()).collect::<BTreeSet<_>>();
        let (regions_added, regions_removed) = difference(codes(&running.registry), codes(new_registry));
        let (categories_added, categories_removed) =
            difference(categories(&running.taxonomy), categories(new_taxonomy));
        info!(
            subject = %access.principal.subject,
            regions_added = regions_added.len(),
            regions_removed = regions_removed.len(),
            "reference data validated"
        );
        Ok(Response::new(api::ReferenceChanges {
            after: Some(summary(new_registry, new_taxonomy, &regions_sha256, &categories_sha256)),
            regions_added,
            regions_removed,
            categories_added,
            categories_removed,
        }))
    }
}
