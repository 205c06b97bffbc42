# t-lib-deps.sh -- no dependency cycle between the library's files
# (scripts/lib-deps.sh over the objects in $MIM_BUILD/obj/lib), after a
# self-test on objects made here that shows the check does catch one.
. "$MIM_TOP/tests/lib.sh"
DEPS="$MIM_TOP/scripts/lib-deps.sh"

# a.c and b.c call each other; c.c calls a.c and d.c, which calls nothing
mkdir -p "$T/lib/x"
echo 'int b(int); int a(int n) { return n ? b(n - 1) : 0; }' >"$T/a.c"
echo 'int a(int); int b(int n) { return n ? a(n - 1) : 1; }' >"$T/b.c"
echo 'int a(int); int d(void); int c(void) { return a(3) + d(); }' >"$T/c.c"
echo 'int d(void) { return 4; }' >"$T/d.c"
for f in a b c d; do cc -c -o "$T/lib/x/$f.o" "$T/$f.c" || notok "self-test: cc $f.c"; done
"$DEPS" "$T/lib" >"$T/cyc" 2>&1
rc=$?
check 'self-test: two files that call each other are a cycle' \
	'[ $rc -eq 1 ] && grep -qx "cycle: lib/x/a.c lib/x/b.c" "$T/cyc"'
check 'self-test: it names the symbols of both edges' \
	'grep -qx "#   lib/x/a.c -> lib/x/b.c: b" "$T/cyc" && grep -qx "#   lib/x/b.c -> lib/x/a.c: a" "$T/cyc"'
check 'self-test: a file that only calls into the cycle is not in it' \
	'[ $(grep -c "^cycle:" "$T/cyc") -eq 1 ] && ! grep -q "[cd]\.c" "$T/cyc"'
rm "$T/lib/x/b.o"
check 'self-test: without the cycle, it passes' '"$DEPS" "$T/lib"'

# the library itself: one line per cycle, its files and edges
"$DEPS" "$MIM_TOP/$MIM_BUILD/obj/lib" >"$T/lib.cyc" 2>&1
rc=$?
if [ $rc -eq 0 ]; then
	ok 'no dependency cycle between the files of lib/'
elif [ $rc -eq 1 ]; then
	while read -r tag files; do
		case $tag in
		cycle:) notok "a dependency cycle between lib files: $files" ;;
		*) echo "$tag $files" ;;
		esac
	done <"$T/lib.cyc"
else
	notok "scripts/lib-deps.sh failed on $MIM_BUILD/obj/lib"
	sed 's/^/#   /' "$T/lib.cyc"
fi
