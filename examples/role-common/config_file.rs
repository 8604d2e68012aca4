//! The TOML file a role binary takes (`--config FILE`): the tables of
//! ugc-server's configuration it knows; the others are ignored, so one
//! file can serve several binaries.

use anyhow::Context as _;

/// The file at `path` as `T`, or `T::default()` without one.
pub fn load<T: serde::de::DeserializeOwned + Default>(
    path: Option<&std::path::Path>,
) -> anyhow::Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
