//! What an uploaded file is, judged by its bytes, and the names it may carry.
//!
//! A file's name and the browser's `Content-Type` are the uploader's claims; the
//! first bytes are not. A type is accepted only when the bytes say it is on the
//! allow-list *and* the name's extension agrees, so an executable renamed
//! `invoice.pdf` and a page of HTML calling itself a PNG are both refused.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// One accepted kind of file: the type stored and served, the extensions a name may have.
struct Kind {
    mime: &'static str,
    label: &'static str,
    extensions: &'static [&'static str],
}

const ACCEPTED: &[Kind] = &[
    // Illustrator files since CS are PDFs inside.
    Kind { mime: "application/pdf", label: "a PDF document", extensions: &["pdf", "ai"] },
    Kind { mime: "image/png", label: "a PNG image", extensions: &["png"] },
    Kind { mime: "image/jpeg", label: "a JPEG image", extensions: &["jpg", "jpeg"] },
    Kind { mime: "image/gif", label: "a GIF image", extensions: &["gif"] },
    Kind { mime: "image/webp", label: "a WebP image", extensions: &["webp"] },
    Kind { mime: "image/tiff", label: "a TIFF image", extensions: &["tif", "tiff"] },
    Kind { mime: "image/vnd.adobe.photoshop", label: "a Photoshop file", extensions: &["psd"] },
    Kind { mime: "application/postscript", label: "a PostScript file", extensions: &["eps", "ps"] },
    Kind {
        mime: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        label: "a Word document",
        extensions: &["docx"],
    },
    Kind {
        mime: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        label: "an Excel workbook",
        extensions: &["xlsx"],
    },
    Kind {
        mime: "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        label: "a PowerPoint presentation",
        extensions: &["pptx"],
    },
    Kind { mime: "application/vnd.oasis.opendocument.text", label: "an OpenDocument text", extensions: &["odt"] },
    Kind {
        mime: "application/vnd.oasis.opendocument.spreadsheet",
        label: "an OpenDocument spreadsheet",
        extensions: &["ods"],
    },
    Kind { mime: "application/zip", label: "a ZIP archive", extensions: &["zip"] },
    Kind { mime: "text/plain", label: "a text file", extensions: &["txt"] },
    Kind { mime: "text/csv", label: "a CSV file", extensions: &["csv"] },
];

/// The file types people may upload, for the form's `accept` attribute and its help text.
pub fn accept_attribute() -> String {
    ACCEPTED.iter().flat_map(|k| k.extensions.iter().map(|e| format!(".{e}"))).collect::<Vec<_>>().join(",")
}

pub const ACCEPTED_SUMMARY: &str = "PDF, images (PNG, JPEG, GIF, WebP, TIFF, PSD, EPS/AI), Word, Excel, PowerPoint, \
                                    OpenDocument, ZIP, text and CSV";

/// An accepted file: the content type to store and serve, and the name to show.
#[derive(Debug, PartialEq, Eq)]
pub struct Detected {
    pub content_type: &'static str,
    pub file_name: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("The file is empty.")]
    Empty,
    #[error("{what} can't be uploaded here. Accepted: {ACCEPTED_SUMMARY}.")]
    NotAllowed { what: String },
    #[error(
        "The file is named “{file_name}” but its contents are {actual}. Rename it to .{extension} or choose the right file."
    )]
    Mismatch { file_name: String, actual: &'static str, extension: &'static str },
}

/// Judges a file by its first bytes (at least the first few KiB) and its sanitised name.
pub fn detect(head: &[u8], file_name: &str) -> Result<Detected, Refusal> {
    if head.is_empty() {
        return Err(Refusal::Empty);
    }
    let extension = extension_of(file_name);
    let kind = match infer::get(head) {
        Some(found) => {
            let mime = found.mime_type();
            match ACCEPTED.iter().find(|k| k.mime == mime) {
                // Office files are ZIP archives; the parts that tell them apart may lie
                // past the bytes looked at, so a ZIP named .docx is taken at its word.
                Some(zip) if zip.mime == "application/zip" => ACCEPTED
                    .iter()
                    .find(|k| {
                        k.mime.starts_with("application/vnd.")
                            && extension.as_deref().is_some_and(|e| k.extensions.contains(&e))
                    })
                    .unwrap_or(zip),
                Some(kind) => kind,
                None => return Err(Refusal::NotAllowed { what: describe_refused(mime) }),
            }
        }
        None if looks_like_text(head) => match extension.as_deref() {
            Some("csv") => text_kind("text/csv"),
            Some("txt") | None => text_kind("text/plain"),
            // Text under another name (.html, .svg, .js …) is exactly what must not pass as a document.
            Some(other) => return Err(Refusal::NotAllowed { what: format!("A .{other} file") }),
        },
        None => return Err(Refusal::NotAllowed { what: "A file of unknown type".into() }),
    };
    match extension {
        Some(e) if kind.extensions.contains(&e.as_str()) => {
            Ok(Detected { content_type: kind.mime, file_name: file_name.to_owned() })
        }
        Some(_) => Err(Refusal::Mismatch {
            file_name: file_name.to_owned(),
            actual: kind.label,
            extension: kind.extensions[0],
        }),
        // A name without an extension gets the one its contents call for.
        None => Ok(Detected { content_type: kind.mime, file_name: format!("{file_name}.{}", kind.extensions[0]) }),
    }
}

fn text_kind(mime: &str) -> &'static Kind {
    ACCEPTED.iter().find(|k| k.mime == mime).unwrap_or(&ACCEPTED[0])
}

fn describe_refused(mime: &str) -> String {
    match mime {
        "application/vnd.microsoft.portable-executable" => "A Windows program".into(),
        "application/x-executable" | "application/x-mach-binary" | "application/vnd.android.dex" => "A program".into(),
        "text/x-shellscript" => "A script".into(),
        "text/html" | "text/xml" => "A web page or XML file".into(),
        "application/x-ole-storage" | "application/msword" | "application/vnd.ms-excel" => {
            "An old-style Office file (which can carry macros)".into()
        }
        other => format!("A file of type {other}"),
    }
}

/// UTF-8 without control characters other than tab, CR, LF and form feed; the
/// last character may be cut off by the end of `head`.
fn looks_like_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => match std::str::from_utf8(&head[..e.valid_up_to()]) {
            Ok(s) => s,
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    valid.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c'))
}

fn extension_of(file_name: &str) -> Option<String> {
    let (stem, ext) = file_name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty() && ext.len() <= 8).then(|| ext.to_ascii_lowercase())
}

const MAX_NAME_CHARS: usize = 180;

/// The name a file is shown and downloaded under: the last path component of
/// what the browser sent, without control or reserved characters, at most 180
/// characters with the extension kept. Never used to store the file.
pub fn sanitize_file_name(sent: &str) -> String {
    let last = sent.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = without_invisible(last)
        .chars()
        .map(|c| if c.is_control() || matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') { '_' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let trimmed = cleaned.trim_matches(|c: char| c == '.' || c == ' ');
    let name = if trimmed.is_empty() { "file".to_owned() } else { trimmed.to_owned() };
    if name.chars().count() <= MAX_NAME_CHARS {
        return name;
    }
    match name.rsplit_once('.').filter(|(_, ext)| ext.chars().count() <= 8) {
        Some((stem, ext)) => {
            let keep = MAX_NAME_CHARS - ext.chars().count() - 1;
            format!("{}.{ext}", stem.chars().take(keep).collect::<String>())
        }
        None => name.chars().take(MAX_NAME_CHARS).collect(),
    }
}

/// Drops the characters that change how text *looks* without being seen:
/// bidirectional overrides and isolates (so `invoice\u{202E}fdp.zip` cannot pose
/// as `invoicepiz.pdf`), zero-width characters and the byte-order mark.
pub fn without_invisible(text: &str) -> String {
    text.chars()
        .filter(|c| {
            !matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
        })
        .collect()
}

/// RFC 5987 `attr-char`: everything else in a `filename*` value is percent-encoded.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `Content-Disposition: attachment` as RFC 6266 has it: an ASCII `filename`
/// for old clients and the exact UTF-8 name in `filename*`.
pub fn attachment(file_name: &str) -> String {
    let fallback: String = file_name
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{}", utf8_percent_encode(file_name, ATTR_CHAR))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n";
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0\x01\0\0\0";
    const EXE: &[u8] = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0\xb8\0\0\0\0\0\0\0@\0\0\0\0\0\0\0";

    #[test]
    fn accepts_what_the_bytes_and_the_name_agree_on() {
        assert_eq!(detect(PDF, "Artwork v2.pdf").map(|d| d.content_type), Ok("application/pdf"));
        assert_eq!(detect(PNG, "proof.PNG").map(|d| d.content_type), Ok("image/png"));
        assert_eq!(detect(b"sku,qty\nA-1,4\n", "order.csv").map(|d| d.content_type), Ok("text/csv"));
        assert_eq!(detect("Grüße\n".as_bytes(), "notes.txt").map(|d| d.content_type), Ok("text/plain"));
    }

    #[test]
    fn a_name_without_extension_gets_the_one_its_bytes_call_for() {
        assert_eq!(detect(PDF, "scan").map(|d| d.file_name), Ok("scan.pdf".to_owned()));
    }

    #[test]
    fn renamed_programs_are_refused() {
        let mut elf = ELF.to_vec();
        elf.resize(128, 0);
        assert_eq!(detect(&elf, "invoice.pdf").unwrap_err().to_string().get(..9), Some("A program"));
        let mut exe = EXE.to_vec();
        exe.resize(128, 0);
        let refused = detect(&exe, "artwork.png").unwrap_err().to_string();
        assert!(refused.starts_with("A Windows program can't be uploaded"), "{refused}");
        assert!(matches!(detect(b"#!/bin/sh\nrm -rf /\n", "run.txt"), Err(Refusal::NotAllowed { .. })));
    }

    #[test]
    fn contents_that_contradict_the_name_are_refused() {
        assert_eq!(
            detect(PNG, "contract.pdf"),
            Err(Refusal::Mismatch { file_name: "contract.pdf".into(), actual: "a PNG image", extension: "png" })
        );
        // HTML or SVG passed off as an image or as text under its own name.
        assert!(detect(b"<!DOCTYPE html><script>alert(1)</script>", "logo.png").is_err());
        assert!(detect(b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>", "logo.svg").is_err());
        assert!(detect(b"<p>hello</p>", "page.html").is_err());
    }

    #[test]
    fn empty_and_binary_unknowns_are_refused() {
        assert_eq!(detect(b"", "a.pdf"), Err(Refusal::Empty));
        assert!(matches!(detect(&[0u8, 1, 2, 3, 0xff, 0xfe, 0], "blob.txt"), Err(Refusal::NotAllowed { .. })));
    }

    #[test]
    fn text_cut_in_the_middle_of_a_character_is_still_text() {
        let mut head = "Größe".as_bytes().to_vec();
        head.pop();
        assert!(looks_like_text(&head));
    }

    #[test]
    fn file_names_lose_paths_and_reserved_characters() {
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("C:\\Users\\alice\\Desktop\\proof.pdf"), "proof.pdf");
        assert_eq!(sanitize_file_name("a<b>c:d\"e|f?g*h.pdf"), "a_b_c_d_e_f_g_h.pdf");
        assert_eq!(sanitize_file_name("bad\u{0}\u{7}name\r\n.pdf"), "bad__name__.pdf");
        assert_eq!(sanitize_file_name("  ..hidden  "), "hidden");
        assert_eq!(sanitize_file_name("...."), "file");
        assert_eq!(sanitize_file_name("Zeichnung – Größe 2.pdf"), "Zeichnung – Größe 2.pdf");
        assert_eq!(sanitize_file_name("invoice\u{202E}fdp.zip"), "invoicefdp.zip");
        assert_eq!(sanitize_file_name("a\u{200B}b\u{FEFF}.pdf"), "ab.pdf");
        let long = format!("{}.pdf", "x".repeat(400));
        let kept = sanitize_file_name(&long);
        assert_eq!(kept.chars().count(), MAX_NAME_CHARS);
        assert!(kept.ends_with(".pdf"));
    }

    #[test]
    fn attachment_names_follow_rfc_6266() {
        assert_eq!(attachment("report.pdf"), "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf");
        assert_eq!(
            attachment("Größe \"final\".pdf"),
            "attachment; filename=\"Gr__e _final_.pdf\"; filename*=UTF-8''Gr%C3%B6%C3%9Fe%20%22final%22.pdf"
        );
    }
}
