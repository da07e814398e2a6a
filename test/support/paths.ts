// Where the tests find the repository and the team's shared folder (the real-data corpus and the
// SPEC live beside the clone, in ../shared; they are not part of the package).
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The repository root. */
export const REPO = path.resolve(__dirname, '..', '..');
/** ../shared beside the clone; TEST_SHARED_DIR points elsewhere (e.g. from a worktree). */
export const SHARED = process.env.TEST_SHARED_DIR ? path.resolve(process.env.TEST_SHARED_DIR) : path.resolve(REPO, '..', 'shared');
/** The real files written by other libraries (SHARED/realdata, described by its INDEX.md). */
export const REAL = path.join(SHARED, 'realdata');
export const haveReal = fs.existsSync(REAL);
