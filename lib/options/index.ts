// lib/options: the option table (table.ts), validation from it (validate.ts), the one size parser
// (size.ts) and the generated docs (docs.ts).
export * from './table';
export * from './validate';
export * from './size';
