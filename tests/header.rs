//! include/pool.h must be exactly what cbindgen generates from the source.
//! `POOL_BLESS=1 cargo test --test header` rewrites it.

use std::path::Path;

#[test]
fn header_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(cfg)
        .generate()
        .expect("cbindgen can parse the crate")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = root.join("include/pool.h");
    if std::env::var_os("POOL_BLESS").is_some() {
        // Whole or not at all: the other tests here compile the header meanwhile.
        let tmp = path.with_extension("h.new");
        std::fs::write(&tmp, &generated).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/pool.h is out of date with src/ffi; regenerate it with `POOL_BLESS=1 cargo test --test header`"
    );
}

/// Compiles `src` (C or C++ by `lang`) with the repository's include/ first; returns stdout, or
/// the compiler's messages as the error.
fn compile(lang: &str, args: &[&str], src: &str) -> Result<String, String> {
    use std::io::Write;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (cc, std) = match lang {
        "c" => (std::env::var("CC").unwrap_or_else(|_| "cc".into()), "-std=c11"),
        _ => (std::env::var("CXX").unwrap_or_else(|_| "c++".into()), "-std=c++17"),
    };
    let mut child = std::process::Command::new(&cc)
        .args(["-x", lang, std, "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg(format!("-I{}", root.join("include").display()))
        .args(args)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cc}: {e}"));
    child.stdin.take().unwrap().write_all(src.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn words(text: &str) -> std::collections::BTreeSet<String> {
    let mut set = std::collections::BTreeSet::new();
    let mut cur = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            cur.push(c);
        } else if !cur.is_empty() {
            if !cur.starts_with(|c: char| c.is_ascii_digit()) {
                set.insert(std::mem::take(&mut cur));
            }
            cur.clear();
        }
    }
    set
}

fn ours(name: &str) -> bool {
    name.starts_with("POOL_") || name.starts_with("pool_")
}

/// Keywords: they appear in any header's tokens but declare nothing.
const KEYWORDS: &str = "alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t \
    char16_t char32_t class compl concept const consteval constexpr constinit const_cast continue co_await \
    co_return co_yield decltype default delete do double dynamic_cast else enum explicit export extern false \
    float for friend goto if inline int long mutable namespace new noexcept not not_eq nullptr operator or \
    or_eq private protected public register reinterpret_cast requires restrict return short signed sizeof \
    static static_assert static_cast struct switch template this thread_local throw true try typedef typeid \
    typename union unsigned using virtual void volatile wchar_t while xor xor_eq _Bool _Alignas _Alignof \
    _Atomic _Generic _Noreturn _Static_assert _Thread_local __attribute__ __restrict __extension__";

/// The header is a guest: every macro it defines, and every name it declares at file scope (in
/// C++: outside `namespace pool`), starts with POOL_/pool_. Macros come from `-dM -E` against
/// the same system headers alone; declared names are found by declaring each other word of the
/// preprocessed header at file scope in one program, which fails to compile for any the header
/// took.
fn header_claims_only_its_own_names(lang: &str, header: &str, system: &str) {
    let with = format!("{system}\n#include <{header}>\n");
    let macros = |src: &str| {
        let out = compile(lang, &["-dM", "-E"], src).unwrap_or_else(|e| panic!("{e}"));
        out.lines()
            .filter_map(|l| l.strip_prefix("#define "))
            .map(|l| l.split([' ', '(']).next().unwrap().to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let foreign: Vec<_> = macros(&with).difference(&macros(system)).filter(|m| !ours(m)).cloned().collect();
    assert!(foreign.is_empty(), "{header} defines macros outside POOL_/pool_: {foreign:?}");

    let tokens = |src: &str| words(&compile(lang, &["-E", "-P"], src).unwrap_or_else(|e| panic!("{e}")));
    let keywords = words(KEYWORDS);
    let candidates: Vec<_> = tokens(&with)
        .difference(&tokens(system))
        .filter(|w| !ours(w) && !keywords.contains(*w) && *w != "pool")
        .cloned()
        .collect();
    assert!(candidates.len() > 10, "too few words found in {header}: {candidates:?}");
    let mut probe = with.clone();
    for w in &candidates {
        probe += &format!("int {w};\nstruct {w} {{ int pool_probe_; }};\n");
    }
    probe += "int main(void) { return 0; }\n";
    if let Err(e) = compile(lang, &["-fsyntax-only", "-Wno-unused-variable"], &probe) {
        panic!("{header} declares names outside POOL_/pool_ (a program declaring them fails):\n{e}");
    }
}

#[test]
fn c_header_claims_only_its_own_names() {
    header_claims_only_its_own_names("c", "pool.h", "#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n");
}

#[test]
fn cpp_header_claims_only_its_own_names() {
    let system = [
        "cstddef",
        "cstdint",
        "cstdio",
        "cstring",
        "exception",
        "functional",
        "initializer_list",
        "memory",
        "mutex",
        "new",
        "optional",
        "stdexcept",
        "string",
        "string_view",
        "tuple",
        "type_traits",
        "utility",
        "vector",
        "unistd.h",
        "stdbool.h",
        "stddef.h",
        "stdint.h",
    ]
    .iter()
    .map(|h| format!("#include <{h}>\n"))
    .collect::<String>();
    header_claims_only_its_own_names("c++", "pool.hpp", &system);
}

/// Names users pick for themselves (once macros of pool.h) compile beside the headers, as
/// macros defined before the include and as identifiers after it.
#[test]
fn user_names_compile_beside_the_headers() {
    let prog = |header: &str| {
        format!(
            "#define QUEUE \"queue\"\n#define LOCK 2\n#define EVENT(x) (x)\n#include <{header}>\n\
             #undef QUEUE\n#undef LOCK\n#undef EVENT\n\
             enum state {{ IDLE, LOCK, QUEUE, EVENT }};\n\
             static int use(enum state s) {{ return s == LOCK ? 1 : (int)s; }}\n\
             int main(void) {{ pool_t *p = 0; (void)p; return use(IDLE) + (POOL_OK != 0); }}\n"
        )
    };
    compile("c", &["-fsyntax-only"], &prog("pool.h")).unwrap_or_else(|e| panic!("C: {e}"));
    compile("c++", &["-fsyntax-only"], &prog("pool.hpp")).unwrap_or_else(|e| panic!("C++: {e}"));
    let scoped = "#include <pool.hpp>\nenum class State { IDLE, LOCK, QUEUE, EVENT };\n\
                  int main() { return State::LOCK == State::IDLE; }\n";
    compile("c++", &["-fsyntax-only"], scoped).unwrap_or_else(|e| panic!("C++ enum class: {e}"));
}
