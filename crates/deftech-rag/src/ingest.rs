//! Documents from files: plain text, Markdown, reStructuredText (headings become Markdown
//! headings), HTML (headings, paragraphs and lists kept; scripts, styles and navigation
//! dropped) and PDF (text per page, each page a section `Page N`).

use std::path::{Path, PathBuf};

use scraper::{Html, Node};

use crate::access::Label;
use crate::chunk::Format;
use crate::error::{Error, Result};
use crate::store::DocumentMeta;

/// A document ready to ingest.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Identity, title, source, label.
    pub meta: DocumentMeta,
    /// Its text (Markdown or plain).
    pub text: String,
    /// How the text is structured.
    pub format: Format,
}

impl Document {
    /// A document from text already in memory.
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        text: impl Into<String>,
        format: Format,
        label: Label,
    ) -> Document {
        let id = id.into();
        Document {
            meta: DocumentMeta {
                source: id.clone(),
                id,
                title: title.into(),
                label,
            },
            text: text.into(),
            format,
        }
    }
}

/// The file kinds [`load`] reads, by extension.
pub const EXTENSIONS: [&str; 8] = [
    "txt", "md", "markdown", "rst", "html", "htm", "xhtml", "pdf",
];

/// True when [`load`] can read `path` (by its extension).
pub fn supported(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads a file into a [`Document`] labelled `label`; its id is `id` (typically the path
/// relative to the ingested folder).
pub fn load(path: &Path, id: &str, label: Label) -> Result<Document> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let read_text = || {
        std::fs::read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().trim_end_matches(".rst").to_owned())
        .unwrap_or_else(|| id.to_owned());
    let (text, format, title) = match ext.as_str() {
        "md" | "markdown" => {
            let t = read_text()?;
            let title = first_heading(&t);
            (t, Format::Markdown, title)
        }
        // Sphinx sources (`*.rst.txt`) are reStructuredText too.
        "rst" => {
            let t = rst_to_markdown(&read_text()?);
            let title = first_heading(&t);
            (t, Format::Markdown, title)
        }
        "txt" if path.to_string_lossy().ends_with(".rst.txt") => {
            let t = rst_to_markdown(&read_text()?);
            let title = first_heading(&t);
            (t, Format::Markdown, title)
        }
        "txt" => (read_text()?, Format::Plain, None),
        "html" | "htm" | "xhtml" => {
            let (t, title) = html_to_markdown(&read_text()?);
            let title = title.or_else(|| first_heading(&t));
            (t, Format::Markdown, title)
        }
        "pdf" => (pdf_to_markdown(path)?, Format::Markdown, None),
        other => {
            return Err(Error::Invalid {
                field: "document",
                reason: format!(
                    "{}: unsupported file type {other:?} (supported: {})",
                    path.display(),
                    EXTENSIONS.join(", ")
                ),
            });
        }
    };
    Ok(Document {
        meta: DocumentMeta {
            id: id.to_owned(),
            title: title.unwrap_or(stem),
            source: path.display().to_string(),
            label,
        },
        text,
        format,
    })
}

/// Every supported file under `dir`, sorted, with its id (path relative to `dir`, `/`-separated).
pub fn walk(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| Error::Io {
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && supported(&path) {
                let id = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((path, id));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn first_heading(markdown: &str) -> Option<String> {
    markdown
        .lines()
        .find_map(|l| {
            l.strip_prefix('#')
                .map(|h| h.trim_start_matches('#').trim().to_owned())
        })
        .filter(|h| !h.is_empty())
}

/// reStructuredText section titles (a line underlined, optionally overlined, with a repeated
/// punctuation character) become Markdown headings; levels follow the order in which
/// underline styles first appear, as in Sphinx. Everything else is kept as it is.
pub fn rst_to_markdown(rst: &str) -> String {
    fn adornment(line: &str) -> Option<char> {
        let t = line.trim_end();
        let c = t.chars().next()?;
        (t.chars().count() >= 3 && "=-~^\"'`#*+_:.".contains(c) && t.chars().all(|x| x == c))
            .then_some(c)
    }
    let lines: Vec<&str> = rst.lines().collect();
    let mut styles: Vec<(char, bool)> = Vec::new();
    let mut out = String::with_capacity(rst.len() + 64);
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        // Overlined: adornment, title, same adornment.
        if let Some(c) = adornment(line)
            && i + 2 < lines.len()
            && !lines[i + 1].trim().is_empty()
            && adornment(lines[i + 2]) == Some(c)
        {
            let level = level_of(&mut styles, (c, true));
            out.push_str(&format!("{} {}\n", "#".repeat(level), lines[i + 1].trim()));
            i += 3;
            continue;
        }
        if !line.trim().is_empty()
            && adornment(line).is_none()
            && !line.starts_with(' ')
            && i + 1 < lines.len()
            && let Some(c) = adornment(lines[i + 1])
            && lines[i + 1].trim_end().chars().count() >= line.trim_end().chars().count()
        {
            let level = level_of(&mut styles, (c, false));
            out.push_str(&format!("{} {}\n", "#".repeat(level), line.trim()));
            i += 2;
            continue;
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    out
}

fn level_of(styles: &mut Vec<(char, bool)>, style: (char, bool)) -> usize {
    let i = styles.iter().position(|s| *s == style).unwrap_or_else(|| {
        styles.push(style);
        styles.len() - 1
    });
    (i + 1).min(6)
}

/// HTML to Markdown-ish text: `h1`–`h6` become headings, block elements paragraphs, `li`
/// items `- …`, `pre` is kept verbatim; `script`, `style`, `nav`, `header`, `footer`,
/// `noscript`, `template` and `head` are dropped. Returns the text and the `<title>`.
pub fn html_to_markdown(html: &str) -> (String, Option<String>) {
    let doc = Html::parse_document(html);
    let title = doc
        .select(&scraper::Selector::parse("title").expect("valid selector"))
        .next()
        .map(|t| {
            t.text()
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|t| !t.is_empty());
    let mut out = String::new();
    walk_html(doc.tree.root(), &mut out, false, 0);
    // Collapse runs of blank lines.
    let mut text = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            if blank == 1 && !text.is_empty() {
                text.push('\n');
            }
        } else {
            blank = 0;
            text.push_str(line);
            text.push('\n');
        }
    }
    (text, title)
}

/// Elements nested deeper than this are read as plain text, without recursion (a hostile
/// document of 100,000 nested `div`s would otherwise overflow the stack).
const MAX_HTML_DEPTH: usize = 128;

fn walk_html(node: ego_tree::NodeRef<'_, Node>, out: &mut String, pre: bool, depth: usize) {
    if depth >= MAX_HTML_DEPTH {
        out.push(' ');
        for d in node.descendants() {
            if let Node::Text(t) = d.value() {
                out.push_str(&t.split_whitespace().collect::<Vec<_>>().join(" "));
                out.push(' ');
            }
        }
        return;
    }
    let depth = depth + 1;
    for child in node.children() {
        match child.value() {
            Node::Text(t) => {
                if pre {
                    out.push_str(t);
                } else {
                    let collapsed = t.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !collapsed.is_empty() {
                        if t.starts_with(char::is_whitespace) && !out.ends_with([' ', '\n']) {
                            out.push(' ');
                        }
                        out.push_str(&collapsed);
                        if t.ends_with(char::is_whitespace) {
                            out.push(' ');
                        }
                    }
                }
            }
            Node::Element(e) => {
                let name = e.name();
                match name {
                    "script" | "style" | "nav" | "header" | "footer" | "noscript" | "template"
                    | "head" => {}
                    "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                        let level = usize::from(name.as_bytes()[1] - b'0');
                        let mut inner = String::new();
                        walk_html(child, &mut inner, false, depth);
                        let inner = inner.split_whitespace().collect::<Vec<_>>().join(" ");
                        if !inner.is_empty() {
                            out.push_str(&format!("\n\n{} {inner}\n\n", "#".repeat(level)));
                        }
                    }
                    "br" => out.push('\n'),
                    "pre" => {
                        out.push_str("\n\n");
                        walk_html(child, out, true, depth);
                        out.push_str("\n\n");
                    }
                    "li" => {
                        out.push_str("\n- ");
                        walk_html(child, out, pre, depth);
                        out.push('\n');
                    }
                    "p" | "div" | "section" | "article" | "main" | "ul" | "ol" | "table" | "tr"
                    | "blockquote" | "dl" | "dt" | "dd" | "figure" | "figcaption" | "body"
                    | "html" => {
                        out.push_str("\n\n");
                        walk_html(child, out, pre, depth);
                        out.push_str("\n\n");
                    }
                    "td" | "th" => {
                        walk_html(child, out, pre, depth);
                        out.push_str(" | ");
                    }
                    _ => walk_html(child, out, pre, depth),
                }
            }
            _ => {}
        }
    }
}

/// A PDF's text, one `# Page N` section per page.
pub fn pdf_to_markdown(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let pages =
        pdf_extract::extract_text_from_mem_by_pages(&bytes).map_err(|e| Error::Extract {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    let mut out = String::new();
    for (i, page) in pages.iter().enumerate() {
        let page = page.trim();
        if page.is_empty() {
            continue;
        }
        out.push_str(&format!("# Page {}\n\n{page}\n\n", i + 1));
    }
    if out.is_empty() {
        return Err(Error::Extract {
            path: path.to_owned(),
            reason: "no text (a scanned PDF needs OCR first)".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rst_headings() {
        let rst = "=====\nTitle\n=====\n\nIntro text.\n\nSection\n-------\n\nBody.\n\nSub\n~~~\n\nMore.\n\nOther\n-----\n";
        let md = rst_to_markdown(rst);
        assert_eq!(
            md,
            "# Title\n\nIntro text.\n\n## Section\n\nBody.\n\n### Sub\n\nMore.\n\n## Other\n"
        );
    }

    #[test]
    fn html_structure() {
        let html = r#"<html><head><title> The  Title </title><style>p{}</style></head>
            <body><nav>menu</nav><h1>Intro</h1><p>First &amp; <b>bold</b> para.</p>
            <script>var x = 1;</script><h2>Part <i>two</i></h2><ul><li>one</li><li>two</li></ul>
            <pre>code
  indented</pre></body></html>"#;
        let (text, title) = html_to_markdown(html);
        assert_eq!(title.as_deref(), Some("The Title"));
        assert!(text.contains("# Intro\n\nFirst & bold para.\n"), "{text}");
        assert!(text.contains("## Part two\n"), "{text}");
        assert!(
            text.contains("- one\n") && text.contains("- two\n"),
            "{text}"
        );
        assert!(text.contains("code\n  indented"), "{text}");
        assert!(!text.contains("menu") && !text.contains("var x"), "{text}");
    }

    #[test]
    fn deeply_nested_html_does_not_overflow_the_stack() {
        // Without the depth cap, 4,000 levels of recursion overflow a 512 KiB stack.
        let n = 4_000;
        let html = format!("{}deep words{}", "<div>".repeat(n), "</div>".repeat(n));
        let (text, _) = std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(move || html_to_markdown(&html))
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(text.trim(), "deep words");
    }
}
