import { z } from 'zod';

/** For commands that take nothing: anything typed after the name is a usage error, not ignored. */
export const noArgs = z.string().trim().max(0, 'This command takes no arguments.');
