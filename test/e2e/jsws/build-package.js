// Builds dist/ of one package deterministically from its src/ and the dist/ of
// the packages it depends on (which must be built first): a copy of the
// sources, a manifest with their SHA-256, and a pseudo-random binary file of
// fixed size. Each package's build.js calls it with its name, dependencies and
// data size; the current directory is the package's.
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

module.exports = function build({ name, deps, size }) {
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
  console.log("built " + name + ": " + Object.keys(manifest.files).length + " source file(s), " + size + " bytes of data");
};
