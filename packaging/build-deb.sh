#!/usr/bin/env bash
# Build dist/tegrastats-api_<version>_all.deb from this source tree (`make deb`).
#
# dpkg-buildpackage wants debian/ at the top of the tree and writes its results into
# the parent folder, so the tree is copied to build/deb/tegrastats-api-<version>/ with
# packaging/debian as its debian/, built there with the system's Python (never a
# virtual environment's or pyenv's), and the .deb, .buildinfo and .changes are moved
# into dist/. Needs: dpkg-dev, debhelper, dh-python and the Build-Depends of
# packaging/debian/control (`dpkg-checkbuilddeps` names what is missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
top="$(dirname "$here")"
cd "$top"

version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' tegrastats_api/__init__.py)"
changelog_version="$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)"
if [ "$version" != "$changelog_version" ]; then
    echo "build-deb: tegrastats_api.__version__ is $version but packaging/debian/changelog" \
         "says $changelog_version: add a changelog entry (dch -c packaging/debian/changelog -v $version)" >&2
    exit 2
fi

work="$top/build/deb"
tree="$work/tegrastats-api-$version"
rm -rf "$work"
mkdir -p "$tree" dist

# The files of the tree: in a git checkout, every tracked or new file that .gitignore
# does not exclude (so work not yet committed is built too, and .venv, build/, dist/
# and node_modules never are); elsewhere (an unpacked sdist) everything.
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$top" ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done \
        | tar -C "$top" --null -T - -cf - | tar -C "$tree" -xf -
else
    tar -C "$top" --exclude=./build --exclude=./dist --exclude='./.venv*' -cf - . | tar -C "$tree" -xf -
fi
rm -rf "$tree/debian"
cp -a packaging/debian "$tree/debian"

echo "== dpkg-buildpackage in $tree"
(
    cd "$tree"
    env -u PYTHONPATH -u VIRTUAL_ENV -u PYTHONHOME -u PYENV_VERSION \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        dpkg-buildpackage -us -uc -A
)

for f in "$work"/tegrastats-api_"$version"_*; do
    mv -f "$f" dist/
done
echo "== built dist/tegrastats-api_${version}_all.deb"
