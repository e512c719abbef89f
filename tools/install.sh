#!/bin/sh
# install.sh: what `make install` copies where. Owns only the layout of an installed
# sluice; it never builds (the Makefile does), never creates users or starts services
# (systemd-sysusers, systemd-tmpfiles and the package's maintainer scripts do), and
# never overwrites a configuration that is already there.
#
#   DESTDIR=... PREFIX=/usr B=build tools/install.sh
#
# Variables (the Makefile passes them through):
#   DESTDIR      staging root (a package build's tree); empty for a real install
#   PREFIX       /usr/local by default; /usr for a package
#   B            the build directory holding sluiced, sluicectl, sluice-sim
#   SYSCONFDIR   /etc: sluiced's default config is /etc/sluice/sluice.yaml whatever PREFIX
#   UNITDIR      $PREFIX/lib/systemd/system (systemd also searches /usr/local/lib/...);
#                Debian 12 packages use /lib/systemd/system
#   SYSUSERSDIR  $PREFIX/lib/sysusers.d       TMPFILESDIR  $PREFIX/lib/tmpfiles.d
#   MANDIR       $PREFIX/share/man            DOCDIR       $PREFIX/share/doc/sluice
set -eu
cd "$(dirname "$0")/.."

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
B=${B:-build}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
SYSUSERSDIR=${SYSUSERSDIR:-$PREFIX/lib/sysusers.d}
TMPFILESDIR=${TMPFILESDIR:-$PREFIX/lib/tmpfiles.d}
MANDIR=${MANDIR:-$PREFIX/share/man}
DOCDIR=${DOCDIR:-$PREFIX/share/doc/sluice}
DATADIR=$PREFIX/share/sluice

case "$PREFIX" in
/*) ;;
*) echo "install.sh: PREFIX must be an absolute path (got '$PREFIX')" >&2; exit 2 ;;
esac
for f in "$B/sluiced" "$B/sluicectl" "$B/sluice-sim"; do
	if [ ! -x "$f" ]; then
		echo "install.sh: $f is not built (run make first)" >&2
		exit 1
	fi
done

D=$DESTDIR
run() { echo "$*"; "$@"; }

run install -d "$D$PREFIX/bin" "$D$PREFIX/sbin" "$D$DATADIR/devices" "$D$DOCDIR/examples" \
	"$D$UNITDIR" "$D$SYSUSERSDIR" "$D$TMPFILESDIR" \
	"$D$MANDIR/man1" "$D$MANDIR/man5" "$D$MANDIR/man8" "$D$SYSCONFDIR/sluice"

run install -m 0755 "$B/sluiced" "$D$PREFIX/sbin/sluiced"
run install -m 0755 "$B/sluicectl" "$B/sluice-sim" "$D$PREFIX/bin/"

run install -m 0644 config/devices/*.yaml "$D$DATADIR/devices/"
run install -m 0644 config/sluice.example.yaml "$D$DOCDIR/examples/"
run install -m 0644 README.md docs/*.md "$D$DOCDIR/"

run install -m 0644 man/sluicectl.1 "$D$MANDIR/man1/"
run install -m 0644 man/sluice-sim.1 "$D$MANDIR/man1/"
run install -m 0644 man/sluice.yaml.5 "$D$MANDIR/man5/"
run install -m 0644 man/sluiced.8 "$D$MANDIR/man8/"

# the unit names the binary by its installed path
echo "sed s#/usr/sbin/sluiced#$PREFIX/sbin/sluiced# systemd/sluiced.service > $D$UNITDIR/sluiced.service"
sed -e "s#/usr/sbin/sluiced#$PREFIX/sbin/sluiced#g" systemd/sluiced.service >"$D$UNITDIR/sluiced.service.tmp"
chmod 0644 "$D$UNITDIR/sluiced.service.tmp"
mv "$D$UNITDIR/sluiced.service.tmp" "$D$UNITDIR/sluiced.service"
run install -m 0644 systemd/sluice.sysusers "$D$SYSUSERSDIR/sluice.conf"
run install -m 0644 systemd/sluice.tmpfiles "$D$TMPFILESDIR/sluice.conf"

# the site's config is the operator's: only a first install puts the example there
if [ -e "$D$SYSCONFDIR/sluice/sluice.yaml" ]; then
	echo "install.sh: keeping $D$SYSCONFDIR/sluice/sluice.yaml (already there)"
else
	run install -m 0644 config/sluice.example.yaml "$D$SYSCONFDIR/sluice/sluice.yaml"
fi

if [ -z "$DESTDIR" ]; then
	cat <<MSG
install.sh: installed under $PREFIX. To run the daemon under systemd:
    systemd-sysusers sluice.conf && systemd-tmpfiles --create sluice.conf
    edit $SYSCONFDIR/sluice/sluice.yaml; sluiced --check-config $SYSCONFDIR/sluice/sluice.yaml
    systemctl daemon-reload && systemctl enable --now sluiced
MSG
fi
