#!/usr/bin/env bash
# tests/gpu/fetch_deps.sh — run on the BUILD machine (Debian 12, network to
# its package mirror): fetches the Debian packages flow needs with
# `apt-get download` and unpacks them with `dpkg -x` into
# tests/gpu/deps/root (git-ignored), so tests/gpu/check.sh can build flow
# on a bare GPU node that has nvcc, CMake and Python+torch but neither these
# packages nor a network.  Carry tests/gpu/deps/root with the working tree.
# Nothing is installed on either machine.
set -euo pipefail
cd "$(dirname "$0")"
pkgs="liblmdb-dev liblmdb0 libzstd-dev libzstd1 libxxhash-dev libxxhash0
      libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libopenblas0 libgfortran5 libquadmath0"
rm -rf deps
mkdir -p deps/debs deps/root
( cd deps/debs && apt-get download $pkgs )
for d in deps/debs/*.deb; do dpkg -x "$d" deps/root; done
rm -rf deps/debs deps/root/usr/share/doc deps/root/usr/share/man deps/root/usr/share/lintian
# static archives and LAPACK are not linked (and would push the folder past
# the 64 MiB a carried tree may hold): ~42 MiB remain
find deps/root -name '*.a' -delete
rm -f deps/root/usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack.so*
# Debian's alternatives would point libblas.so.3 etc. at /etc/alternatives;
# flow links libopenblas.so of openblas-pthread/ directly, so nothing else
# is needed.  What was unpacked:
( cd deps/root && find . -name '*.h' -o -name '*.so*' | sort | sed 's/^/  /' ) | head -40
du -sh deps/root
