//! A report page as a small document model, rendered to self-contained HTML
//! (no scripts, no network) and to Markdown from the same content.

use crate::figure::FigureFiles;

/// One piece of a page.
#[derive(Clone, Debug)]
pub enum Block {
    /// A section heading.
    Heading(String),
    /// A paragraph of text.
    Paragraph(String),
    /// A highlighted paragraph (the finding).
    Lead(String),
    /// A bulleted list.
    List(Vec<String>),
    /// A table of text cells.
    Table {
        /// Column names.
        header: Vec<String>,
        /// Rows of cells, as many as columns.
        rows: Vec<Vec<String>>,
    },
    /// A figure (PNG shown, SVG linked) with its caption.
    Figure {
        /// The figure's files, relative to the page.
        files: FigureFiles,
        /// Alternative text: what the figure shows, in one line.
        alt: String,
        /// What it shows and how it compares to the theory or paper.
        caption: String,
    },
    /// Preformatted text (configurations).
    Code(String),
    /// A labelled set of facts (provenance).
    Facts(Vec<(String, String)>),
    /// A study on the index page.
    Card {
        /// The study's title.
        title: String,
        /// Its page, relative to the index.
        href: String,
        /// A figure shown small, relative to the index.
        thumbnail: Option<String>,
        /// The finding in one paragraph.
        finding: String,
        /// Key numbers: (label, value).
        numbers: Vec<(String, String)>,
    },
}

impl Block {
    /// A figure with its alternative text and caption.
    pub fn figure(files: FigureFiles, alt: impl Into<String>, caption: impl Into<String>) -> Self {
        Block::Figure {
            files,
            alt: alt.into(),
            caption: caption.into(),
        }
    }
}

#[derive(Clone, Debug)]
/// A report page as blocks, written out as HTML and as Markdown.
pub struct Doc {
    /// Page title.
    pub title: String,
    /// Link back to the index, relative to the page.
    pub back: Option<String>,
    /// The page's content, in order.
    pub blocks: Vec<Block>,
}

impl Doc {
    /// An empty page titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Doc {
            title: title.into(),
            back: None,
            blocks: Vec::new(),
        }
    }

    /// Append a block.
    pub fn push(&mut self, b: Block) {
        self.blocks.push(b);
    }

    /// Append a section heading.
    pub fn heading(&mut self, s: impl Into<String>) {
        self.push(Block::Heading(s.into()));
    }

    /// Append a paragraph.
    pub fn paragraph(&mut self, s: impl Into<String>) {
        self.push(Block::Paragraph(s.into()));
    }

    /// Append a figure with its alternative text and caption.
    pub fn figure(
        &mut self,
        files: FigureFiles,
        alt: impl Into<String>,
        caption: impl Into<String>,
    ) {
        self.push(Block::figure(files, alt, caption));
    }

    /// A static, self-contained HTML page; every text is HTML-escaped.
    pub fn to_html(&self) -> String {
        let mut b = String::new();
        if let Some(back) = &self.back {
            b.push_str(&format!(
                "<nav><a href=\"{}\">← all studies</a></nav>\n",
                attr(back)
            ));
        }
        b.push_str(&format!("<h1>{}</h1>\n", escape(&self.title)));
        for block in &self.blocks {
            match block {
                Block::Heading(s) => b.push_str(&format!("<h2>{}</h2>\n", escape(s))),
                Block::Paragraph(s) => b.push_str(&format!("<p>{}</p>\n", escape(s))),
                Block::Lead(s) => b.push_str(&format!("<p class=\"lead\">{}</p>\n", escape(s))),
                Block::List(items) => {
                    b.push_str("<ul>\n");
                    for i in items {
                        b.push_str(&format!("<li>{}</li>\n", escape(i)));
                    }
                    b.push_str("</ul>\n");
                }
                Block::Table { header, rows } => {
                    b.push_str("<div class=\"table\"><table>\n<thead><tr>");
                    for h in header {
                        b.push_str(&format!("<th>{}</th>", escape(h)));
                    }
                    b.push_str("</tr></thead>\n<tbody>\n");
                    for r in rows {
                        b.push_str("<tr>");
                        for c in r {
                            b.push_str(&format!("<td>{}</td>", escape(c)));
                        }
                        b.push_str("</tr>\n");
                    }
                    b.push_str("</tbody></table></div>\n");
                }
                Block::Figure { files, alt, caption } => b.push_str(&format!(
                    "<figure><a href=\"{svg}\"><img src=\"{png}\" alt=\"{alt}\" loading=\"lazy\"></a>\
                     <figcaption>{cap} <span class=\"files\">(<a href=\"{png}\">PNG</a> · <a href=\"{svg}\">SVG</a> · <a href=\"{pdf}\">PDF</a>)</span></figcaption></figure>\n",
                    svg = attr(&files.svg),
                    pdf = attr(&files.pdf),
                    png = attr(&files.png),
                    alt = attr(alt),
                    cap = escape(caption)
                )),
                Block::Code(s) => b.push_str(&format!("<pre><code>{}</code></pre>\n", escape(s))),
                Block::Facts(items) => {
                    b.push_str("<dl class=\"facts\">\n");
                    for (k, v) in items {
                        b.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", escape(k), escape(v)));
                    }
                    b.push_str("</dl>\n");
                }
                Block::Card { title, href, thumbnail, finding, numbers } => {
                    b.push_str("<article class=\"card\">\n");
                    if let Some(t) = thumbnail {
                        b.push_str(&format!(
                            "<a href=\"{}\"><img src=\"{}\" alt=\"{}\"></a>\n",
                            attr(href),
                            attr(t),
                            attr(title)
                        ));
                    }
                    b.push_str(&format!("<div><h2><a href=\"{}\">{}</a></h2>\n<p>{}</p>\n", attr(href), escape(title), escape(finding)));
                    if !numbers.is_empty() {
                        b.push_str("<dl class=\"facts\">\n");
                        for (k, v) in numbers {
                            b.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", escape(k), escape(v)));
                        }
                        b.push_str("</dl>\n");
                    }
                    b.push_str("</div></article>\n");
                }
            }
        }
        format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title} — gradscope</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{b}</main>\n</body>\n</html>\n",
            title = escape(&self.title)
        )
    }

    /// The same page as Markdown, for papers and issues.
    pub fn to_markdown(&self) -> String {
        let mut m = format!("# {}\n\n", md_inline(&self.title));
        for block in &self.blocks {
            match block {
                Block::Heading(s) => m.push_str(&format!("## {}\n\n", md_inline(s))),
                Block::Paragraph(s) => m.push_str(&format!("{}\n\n", md_inline(s))),
                Block::Lead(s) => m.push_str(&format!("**{}**\n\n", md_inline(s))),
                Block::List(items) => {
                    for i in items {
                        m.push_str(&format!("- {}\n", md_inline(i)));
                    }
                    m.push('\n');
                }
                Block::Table { header, rows } => {
                    let cell = |s: &str| md_inline(s).replace('|', "\\|");
                    m.push_str(&format!(
                        "| {} |\n",
                        header
                            .iter()
                            .map(|h| cell(h))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    ));
                    m.push_str(&format!("|{}\n", "---|".repeat(header.len())));
                    for r in rows {
                        m.push_str(&format!(
                            "| {} |\n",
                            r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
                        ));
                    }
                    m.push('\n');
                }
                Block::Figure {
                    files,
                    alt,
                    caption,
                } => {
                    m.push_str(&format!(
                        "![{}]({})\n\n*{}* ([SVG]({}) · [PDF]({}))\n\n",
                        md_inline(alt),
                        files.png,
                        md_inline(caption),
                        files.svg,
                        files.pdf
                    ));
                }
                Block::Code(s) => m.push_str(&format!("```\n{s}\n```\n\n")),
                Block::Facts(items) => {
                    for (k, v) in items {
                        m.push_str(&format!("- **{}**: {}\n", md_inline(k), md_inline(v)));
                    }
                    m.push('\n');
                }
                Block::Card {
                    title,
                    href,
                    thumbnail,
                    finding,
                    numbers,
                } => {
                    m.push_str(&format!("## [{}]({})\n\n", md_inline(title), href));
                    if let Some(t) = thumbnail {
                        m.push_str(&format!("![{}]({})\n\n", md_inline(title), t));
                    }
                    m.push_str(&format!("{}\n\n", md_inline(finding)));
                    for (k, v) in numbers {
                        m.push_str(&format!("- **{}**: {}\n", md_inline(k), md_inline(v)));
                    }
                    m.push('\n');
                }
            }
        }
        m
    }
}

/// Escape text for HTML element content.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escape text for an HTML attribute value; also refuse `javascript:` links.
fn attr(s: &str) -> String {
    if s.trim_start()
        .to_ascii_lowercase()
        .starts_with("javascript:")
    {
        return "#".into();
    }
    escape(s)
}

/// Markdown text with the characters that would start markup escaped.
fn md_inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

const CSS: &str = "
:root { --fg:#1b1b1b; --muted:#5a5a5a; --line:#dcdcdc; --accent:#0072b2; }
* { box-sizing: border-box; }
body { margin:0; font: 16px/1.55 system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif; color: var(--fg); background:#fff; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 1.25rem 4rem; }
h1 { font-size: 1.9rem; margin: .4rem 0 1rem; }
h2 { font-size: 1.35rem; margin: 2rem 0 .6rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
a { color: var(--accent); }
nav { font-size: .95rem; }
p.lead { font-size: 1.08rem; background: #f3f7fb; border-left: 4px solid var(--accent); padding: .7rem 1rem; }
figure { margin: 1.5rem 0; }
figure img { width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .95rem; margin-top: .4rem; }
.files { white-space: nowrap; }
div.table { overflow-x: auto; }
table { border-collapse: collapse; font-size: .92rem; margin: .5rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .25rem .55rem; text-align: right; }
th { background: #f5f5f5; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: .8rem; overflow-x: auto; font-size: .85rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; font-size: .92rem; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
article.card { display: grid; grid-template-columns: 320px 1fr; gap: 1.2rem; border: 1px solid var(--line); padding: 1rem; margin: 1rem 0; }
article.card img { width: 100%; border: 1px solid var(--line); }
article.card h2 { margin-top: 0; border: 0; }
@media (max-width: 720px) { article.card { grid-template-columns: 1fr; } }
@media print { nav { display:none; } main { max-width:none; padding:0; } figure { break-inside: avoid; } a { color: inherit; } }
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        let evil = "<script>alert('x')</script>";
        let mut d = Doc::new(evil);
        d.paragraph(evil);
        d.push(Block::Table {
            header: vec![evil.into()],
            rows: vec![vec![evil.into()]],
        });
        d.push(Block::Card {
            title: evil.into(),
            href: "javascript:alert(1)".into(),
            thumbnail: None,
            finding: evil.into(),
            numbers: vec![(evil.into(), evil.into())],
        });
        let html = d.to_html();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(!html.contains("javascript:"));
        let md = d.to_markdown();
        assert!(md.contains("\\<script\\>"));
    }

    #[test]
    fn markdown_tables_have_a_separator_row() {
        let mut d = Doc::new("t");
        d.push(Block::Table {
            header: vec!["a".into(), "b".into()],
            rows: vec![vec!["1".into(), "x|y".into()]],
        });
        let md = d.to_markdown();
        assert!(md.contains("| a | b |\n|---|---|\n| 1 | x\\|y |\n"), "{md}");
    }
}
