//! Scripts made by pg_dump and pg_restore, abridged, that the unit tests feed.

/// A plain dump made with `pg_dump --clean` (abridged): two clean statements, then a table
/// whose `ALTER ... DROP` is not one.
pub(super) const SCRIPT: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\nSET client_min_messages = warning;\n\
SELECT pg_catalog.set_config('search_path', '', false);\n\
ALTER TABLE IF EXISTS ONLY public.p1 DROP CONSTRAINT IF EXISTS p1_pkey;\n\
DROP TABLE IF EXISTS public.p;\nSET default_tablespace = '';\n\nCREATE TABLE public.p (\n    id integer\n);\n\
ALTER TABLE public.p DROP COLUMN x;\n\\unrestrict abc\n--\n-- PostgreSQL database dump complete\n--\n";

/// pg_restore's clean section as PostgreSQL 15 writes it (abridged): no comments in it, a
/// dummy view over several lines, statements of every kind, odd quoted names.
pub(super) const CLEAN_SCRIPT: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict k\n\n\
SET client_min_messages = warning;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n\
DROP POLICY IF EXISTS p ON public.base;\n\
CREATE OR REPLACE VIEW public.by_key AS\nSELECT\n    NULL::integer AS key,\n    NULL::public.dom_nv AS d;\n\
ALTER DOMAIN public.dom_nv DROP CONSTRAINT IF EXISTS dom_nv_ck;\n\
SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata WHERE oid = '16411';\n\
DROP TABLE IF EXISTS hr.\"line\nbreak; \"\"x\"\"\";\n\
DROP TABLE IF EXISTS public.base;\n\
--\n-- Name: base; Type: TABLE; Schema: public; Owner: -\n--\n\n\
CREATE TABLE public.base (\n    key integer\n);\n\
DROP TABLE later;\n\
CREATE OR REPLACE VIEW public.v AS SELECT 1;\n\
\\unrestrict k\n--\n-- PostgreSQL database dump complete\n--\n";
