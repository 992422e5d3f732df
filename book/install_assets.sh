#!/usr/bin/env bash
# Copy the browser-side assets that the book serves itself (so pages work offline) from the npm
# packages in node_modules/ (installed by `npm ci`, see `make assets`) into book/_assets/widgets/:
#   require.js, widgets-config.js, embed-amd.js + its icon fonts (ipywidgets 8 HTML manager),
#   and MathJax 3 under mathjax/.
# book/_config.yml serves book/_assets/ as static files and loads these paths.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
modules="$root/node_modules"
dest="$root/book/_assets/widgets"
manager="$modules/@jupyter-widgets/html-manager/dist"
for needed in "$manager/embed-amd.js" "$modules/requirejs/require.js" "$modules/mathjax/es5/tex-chtml.js"; do
  if [[ ! -f "$needed" ]]; then
    echo "install_assets: $needed is missing; run 'npm ci' in $root first" >&2
    exit 1
  fi
done
rm -rf "$dest"
mkdir -p "$dest/mathjax"
cp "$manager/embed-amd.js" "$modules/requirejs/require.js" "$root/book/widgets-config.js" "$dest/"
cp "$manager"/*.{woff,woff2,ttf,eot,svg} "$dest/"
cp -r "$modules/mathjax/es5/." "$dest/mathjax/"
echo "install_assets: $(find "$dest" -type f | wc -l) files in $dest"
