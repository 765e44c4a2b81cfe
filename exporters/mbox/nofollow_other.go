//go:build !unix

package mbox

// oNoFollow is 0 where open has no O_NOFOLLOW: openFile then checks with
// Lstat that the name is no symbolic link and names the file it opened.
const oNoFollow = 0
