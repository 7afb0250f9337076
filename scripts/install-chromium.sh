#!/usr/bin/env bash
# Installs Debian's chromium (headless, for the status-page test) without root: the .debs come
# from the machine's Debian repository (`apt-get download`), unpacked into .cache/chromium/root
# with the few libraries the base system lacks; a wrapper script sets LD_LIBRARY_PATH. Prints
# the wrapper's path. Idempotent; the packages are pinned by name, their versions are whatever
# the configured Debian release serves.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$ROOT/.cache/chromium"
WRAPPER="$DIR/chromium"
# chromium and what its binary links that a minimal Debian 12 lacks (found with ldd).
PACKAGES=(chromium chromium-common libopenh264-7 libdouble-conversion3 libharfbuzz-subset0 libpulse0
  libflac12 libopus0 libxnvctrl0 libminizip1 libopenjp2-7 libogg0 libsndfile1 libasyncns0
  libmp3lame0 libmpg123-0 libvorbis0a libvorbisenc2)
if [[ -x "$WRAPPER" && -f "$DIR/.installed" ]]; then echo "$WRAPPER"; exit 0; fi
command -v apt-get >/dev/null || { echo "install-chromium: apt-get not found (Debian's chromium is used)" >&2; exit 1; }
rm -rf "$DIR/root" && mkdir -p "$DIR/debs" "$DIR/root"
(cd "$DIR/debs" && apt-get download "${PACKAGES[@]}" >&2)
for d in "$DIR"/debs/*.deb; do dpkg -x "$d" "$DIR/root"; done
LIBS="$DIR/root/usr/lib/x86_64-linux-gnu:$DIR/root/usr/lib/x86_64-linux-gnu/pulseaudio"
missing="$(LD_LIBRARY_PATH="$LIBS" ldd "$DIR/root/usr/lib/chromium/chromium" | grep 'not found' || true)"
if [[ -n "$missing" ]]; then
  echo "install-chromium: the chromium binary still lacks libraries:" >&2
  echo "$missing" >&2
  exit 1
fi
cat > "$WRAPPER" <<WRAP
#!/usr/bin/env bash
export LD_LIBRARY_PATH="$LIBS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$DIR/root/usr/lib/chromium/chromium" "\$@"
WRAP
chmod +x "$WRAPPER"
touch "$DIR/.installed"
echo "$WRAPPER"
