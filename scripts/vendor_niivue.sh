#!/usr/bin/env bash
# Refresh the vendored NiiVue viewer used by the review page (src/medannot/server/static/vendor/niivue/).
# Installs @niivue/niivue from the npm registry in a scratch folder outside the repository and copies only its
# self-contained ES module bundle (dist/index.js: NiiVue plus its bundled dependencies, no imports) and licences.
# The server then serves it from the package: nothing is fetched at run time.
# Usage: bash scripts/vendor_niivue.sh [VERSION]   (default 0.69.0)
set -euo pipefail
version="${1:-0.69.0}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
dest="$repo/src/medannot/server/static/vendor/niivue"
scratch="$(mktemp -d /tmp/niivue-build.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "@niivue/niivue@$version"
pkg="$scratch/node_modules/@niivue/niivue"
installed="$(node -p "require('$pkg/package.json').version")"
mkdir -p "$dest"
# The bundle without its source-map comment (the 4.8 MB map is not shipped).
sed '/^\/\/# sourceMappingURL=/d' "$pkg/dist/index.js" > "$dest/niivue.js"
# NiiVue's npm package carries no LICENSE file; its licence is BSD-2-Clause ("niivue authors", package.json).
{
  cat <<'LIC'
NiiVue (@niivue/niivue) - BSD 2-Clause License

Copyright (c) 2021, Niivue
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
LIC
  # Licences of the dependencies that esbuild bundled into dist/index.js.
  for dep in fflate gl-matrix nifti-reader-js zarrita @zarrita/storage numcodecs array-equal @lukeed/uuid \
             @ungap/structured-clone; do
    dir="$scratch/node_modules/$dep"
    lic="$(ls "$dir" | grep -i -m1 '^licen[cs]e' || true)"
    [[ -n "$lic" ]] || { echo "no licence file for $dep" >&2; exit 1; }
    printf '\n\n===== %s %s (bundled into niivue.js) =====\n\n' "$dep" "$(node -p "require('$dir/package.json').version")"
    cat "$dir/$lic"
  done
} > "$dest/LICENSE"
sha="$(sha256sum "$dest/niivue.js" | cut -d' ' -f1)"
cat > "$dest/VENDORED.md" <<MD
# Vendored: NiiVue $installed

- Source: the npm package \`@niivue/niivue@$installed\` (https://github.com/niivue/niivue), licence BSD-2-Clause.
- File: \`niivue.js\` = the package's \`dist/index.js\`, a self-contained ES module (NiiVue and its dependencies
  bundled, no imports, no network access at run time), with its \`sourceMappingURL\` comment removed.
  sha256 \`$sha\`.
- \`LICENSE\`: NiiVue's licence followed by the licences of the dependencies bundled into that file.
- Used by \`../../review.js\` (\`import { Niivue, NVImage } from "./vendor/niivue/niivue.js"\`).

Refresh (needs node/npm and the npm registry; run from the repository root):

\`\`\`bash
bash scripts/vendor_niivue.sh $installed   # or a newer version, then run the browser tests:
OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/server_e2e -q
\`\`\`

which does: \`npm install @niivue/niivue@$installed\` in a scratch folder under /tmp,
\`sed '/^\/\/# sourceMappingURL=/d' node_modules/@niivue/niivue/dist/index.js > niivue.js\`, and gathers the licences.
MD
echo "vendored @niivue/niivue $installed into $dest ($(du -sh "$dest" | cut -f1))"
