//! DataFusion sessions over a verified store version.
//!
//! [`open_session`] registers the personal and public tables of a version from its manifest
//! (never by listing directories) in a session with a bounded, spill-capable memory pool.
//! Governance tables are left out; [`table_provider`] gives the policy layer any table,
//! including governance ones, to build project views from.

use std::sync::Arc;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::SessionState;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::TableClass;
use crate::memory::SpillPool;
use crate::store::StoreVersion;
use crate::{Error, Result};

/// Resource settings of a session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Bytes of memory that all queries of the session may hold together; operators that can
    /// spill to disk do so beyond it, the others fail with a resources-exhausted error.
    pub memory_limit: usize,
    /// Partitions (parallel streams) per query; defaults to the number of cores.
    pub target_partitions: usize,
    /// Rows per batch.
    pub batch_size: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            memory_limit: 2 << 30,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            batch_size: 8192,
        }
    }
}

/// The runtime (bounded, spill-capable memory pool) and configuration (partitions, batch
/// size, no `information_schema`) every session of the engine is built from.
pub fn runtime_and_config(opts: &SessionOptions) -> Result<(Arc<RuntimeEnv>, SessionConfig)> {
    Ok((runtime(opts)?, config(opts)))
}

/// A runtime with a bounded, spill-capable memory pool ([`SpillPool`]) of
/// `opts.memory_limit` bytes. A server builds one and shares it between every session, so the
/// limit holds for all queries together.
pub fn runtime(opts: &SessionOptions) -> Result<Arc<RuntimeEnv>> {
    Ok(RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(SpillPool::new(opts.memory_limit)))
        .build_arc()?)
}

/// The session configuration: partitions, batch size, no `information_schema`.
///
/// DataFusion's check that an aggregation's physical input schema equals its logical one
/// is skipped: the two disagree on nullability alone where a `CASE` (or a `coalesce`,
/// simplified into one) over columns an outer join made nullable is known never NULL by
/// the logical analysis and not by the physical one (rule 7's conditions measured over the
/// full join of two tables about persons). The check is only a check: the physical plan
/// runs on its own schema either way.
pub fn config(opts: &SessionOptions) -> SessionConfig {
    let mut config = SessionConfig::new();
    config
        .options_mut()
        .execution
        .skip_physical_aggregate_schema_check = true;
    config
        .with_target_partitions(opts.target_partitions.max(1))
        .with_batch_size(opts.batch_size.max(1))
        .with_information_schema(false)
        // Clients (JDBC, ADBC, DBeaver) see tables as fivesafes.public.<table>.
        .with_default_catalog_and_schema("fivesafes", "public")
}

/// A session with the given resources.
pub fn new_context(opts: &SessionOptions) -> Result<SessionContext> {
    let (runtime, config) = runtime_and_config(opts)?;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// Opens a version as a session with every personal and public table registered.
pub async fn open_session(version: &StoreVersion, opts: &SessionOptions) -> Result<SessionContext> {
    let ctx = new_context(opts)?;
    for t in &version.manifest.tables {
        if t.class == TableClass::Governance {
            continue;
        }
        let provider = table_provider(&ctx.state(), version, &t.name).await?;
        ctx.register_table(t.name.as_str(), provider)?;
    }
    Ok(ctx)
}

/// A Parquet table provider over exactly the files the manifest lists for `name`, with the
/// schema checked against the manifest's columns.
pub async fn table_provider(
    state: &SessionState,
    version: &StoreVersion,
    name: &str,
) -> Result<Arc<ListingTable>> {
    let entry = version
        .manifest
        .table(name)
        .ok_or_else(|| Error::store(&version.dir, format!("version has no table {name}")))?;
    let urls = entry
        .files
        .iter()
        .map(|f| {
            let path = version.dir.join(&f.path);
            let path = path
                .to_str()
                .ok_or_else(|| Error::store(&path, "path is not valid UTF-8"))?;
            Ok(ListingTableUrl::parse(path)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .infer_schema(state)
        .await?;
    let schema = config
        .file_schema
        .clone()
        .ok_or_else(|| Error::store(&version.dir, format!("table {name} has no schema")))?;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let expected: Vec<&str> = entry.columns.iter().map(|c| c.name.as_str()).collect();
    if names != expected {
        return Err(Error::store(
            &version.dir,
            format!("table {name}: file columns {names:?} differ from the manifest's {expected:?}"),
        ));
    }
    Ok(Arc::new(ListingTable::try_new(config)?))
}
