// Builds dist/ of one package deterministically from its src/ and the dist/ of
// the packages it depends on (which must be built first): a copy of the
// sources, a manifest with their SHA-256, a pseudo-random binary file of
// fixed size and, when `bundle` is set, a text file of that size (as a
// bundler's output: it compresses, where the binary file does not). Each
// package's build.js calls it with its name, dependencies and sizes; the
// current directory is the package's.
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

module.exports = function build({ name, deps, size, bundle = 0 }) {
  fs.rmSync("dist", { recursive: true, force: true });
  fs.mkdirSync("dist/meta", { recursive: true });
  const manifest = { name, files: {}, deps: {} };
  for (const f of fs.readdirSync("src").sort()) {
    const text = fs.readFileSync(path.join("src", f));
    fs.writeFileSync(path.join("dist", f), text);
    manifest.files[f] = crypto.createHash("sha256").update(text).digest("hex");
  }
  for (const d of deps) {
    const m = fs.readFileSync(path.join("..", d, "dist", "meta", "manifest.json"));
    manifest.deps[d] = crypto.createHash("sha256").update(m).digest("hex");
  }
  fs.writeFileSync("dist/meta/manifest.json", JSON.stringify(manifest, null, 2) + "\n");
  const blob = Buffer.alloc(size);
  let block = crypto.createHash("sha256").update(JSON.stringify(manifest)).digest();
  for (let i = 0; i < size; i += 32) {
    block.copy(blob, i);
    block = crypto.createHash("sha256").update(block).digest();
  }
  fs.writeFileSync("dist/data.bin", blob);
  if (bundle > 0) {
    let text = "";
    for (let i = 0; text.length < bundle; i++) {
      text += "export function " + name + "_" + i + "(x) { return x + " + (i % 97) + "; }\n";
    }
    fs.writeFileSync("dist/bundle.js", text.slice(0, bundle));
  }
  console.log("built " + name + ": " + Object.keys(manifest.files).length + " source file(s), " + size + " bytes of data");
};
