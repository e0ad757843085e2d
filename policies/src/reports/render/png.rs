//! The report chart as PNG: the SVG of [`super::to_svg`] rasterised with `resvg`, in
//! process, with no browser and no files.
//!
//! **Fonts.** Labels are SVG text, which needs a font. [`to_png`] uses the system's fonts
//! (loaded once per process; any installed family stands in when none of the chart's
//! preferred sans-serif families is present). On a machine without any font the chart still
//! renders — bars, markers, the total line, axes and grid — without its labels; the HTML page
//! and the SVG are unaffected (the browser renders their text). [`to_png_with`] can leave
//! system fonts out, which makes the output independent of the machine.

use std::sync::{Arc, OnceLock};

use resvg::tiny_skia::{Color, Pixmap, Transform};
use resvg::usvg::{self, fontdb};

use super::super::definition::ReportDef;
use super::super::error::ReportError;
use super::super::run::ReportResult;
use super::svg::to_svg;

/// How to rasterise a chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PngOptions {
    /// Use the system's fonts for labels (otherwise no text is drawn).
    pub system_fonts: bool,
    /// Pixels per SVG unit (1.0: 960 pixels wide; 2.0 for high-density screens). Clamped to
    /// `0.1..=4.0`.
    pub scale: f32,
}

impl Default for PngOptions {
    fn default() -> Self {
        PngOptions {
            system_fonts: true,
            scale: 1.0,
        }
    }
}

/// The system's fonts, loaded once, and the family to use when none of the chart's own is
/// installed.
fn system_fonts() -> &'static (Arc<fontdb::Database>, Option<String>) {
    static DB: OnceLock<(Arc<fontdb::Database>, Option<String>)> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = fontdb::Database::new();
        db.load_system_fonts();
        let family = db
            .faces()
            .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
            .min_by_key(|name| {
                // Prefer the chart's own families, then any sans-serif-looking one.
                match name.as_str() {
                    "DejaVu Sans" => 0,
                    "Liberation Sans" => 1,
                    "Arial" => 2,
                    n if n.contains("Sans") && !n.contains("Mono") => 3,
                    _ => 4,
                }
            });
        if let Some(f) = &family {
            db.set_sans_serif_family(f.clone());
        }
        (Arc::new(db), family)
    })
}

/// The chart as PNG bytes, with system fonts, at scale 1.
pub fn to_png(result: &ReportResult, def: &ReportDef) -> Result<Vec<u8>, ReportError> {
    to_png_with(result, def, &PngOptions::default())
}

/// The chart as PNG bytes with the given options.
pub fn to_png_with(
    result: &ReportResult,
    def: &ReportDef,
    options: &PngOptions,
) -> Result<Vec<u8>, ReportError> {
    let render = |m: String| ReportError::Render(m);
    let svg = to_svg(result, def);
    let mut opts = usvg::Options::default();
    if options.system_fonts {
        let (db, family) = system_fonts();
        opts.fontdb = Arc::clone(db);
        if let Some(f) = family {
            opts.font_family = f.clone();
        }
    }
    let tree = usvg::Tree::from_str(&svg, &opts).map_err(|e| render(e.to_string()))?;
    let scale = if options.scale.is_finite() {
        options.scale.clamp(0.1, 4.0)
    } else {
        1.0
    };
    let size = tree.size();
    let (w, h) = (
        (size.width() * scale).ceil() as u32,
        (size.height() * scale).ceil() as u32,
    );
    let mut pixmap =
        Pixmap::new(w, h).ok_or_else(|| render(format!("cannot allocate a {w}×{h} image")))?;
    pixmap.fill(Color::WHITE);
    resvg::render(
        &tree,
        Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().map_err(|e| render(e.to_string()))
}
