-- tvcaption: a new SQLite database at revision 0010 (scripts/make_sqlite_snapshot.py writes this file)
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
CREATE TABLE models (
	id INTEGER NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	sha256 VARCHAR(64), 
	meta JSON, 
	created_at DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL, 
	CONSTRAINT pk_models PRIMARY KEY (id), 
	CONSTRAINT uq_models_name UNIQUE (name)
);
CREATE TABLE recordings (
	id INTEGER NOT NULL, 
	path TEXT NOT NULL, 
	content_hash VARCHAR(128), 
	probe JSON, 
	duration FLOAT, 
	status VARCHAR(16) DEFAULT 'pending' NOT NULL, 
	error TEXT, 
	claimed_by VARCHAR(255), 
	claimed_at DATETIME, 
	model VARCHAR(255), 
	indexed_at DATETIME, 
	created_at DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL, 
	updated_at DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL, 
	CONSTRAINT pk_recordings PRIMARY KEY (id), 
	CONSTRAINT ck_recordings_status CHECK (status IN ('pending', 'processing', 'done', 'failed')), 
	CONSTRAINT uq_recordings_path UNIQUE (path)
);
CREATE INDEX ix_recordings_content_hash ON recordings (content_hash);
CREATE INDEX ix_recordings_status ON recordings (status);
CREATE TABLE scenes (
	id INTEGER NOT NULL, 
	recording_id INTEGER NOT NULL, 
	"index" INTEGER NOT NULL, 
	start FLOAT NOT NULL, 
	"end" FLOAT NOT NULL, 
	start_frame INTEGER NOT NULL, 
	end_frame INTEGER NOT NULL, 
	CONSTRAINT pk_scenes PRIMARY KEY (id), 
	CONSTRAINT ck_scenes_span CHECK ("end" >= start), 
	CONSTRAINT fk_scenes_recording_id_recordings FOREIGN KEY(recording_id) REFERENCES recordings (id) ON DELETE CASCADE, 
	CONSTRAINT uq_scenes_recording_id_index UNIQUE (recording_id, "index")
);
CREATE TRIGGER scenes_fts_delete AFTER DELETE ON scenes BEGIN DELETE FROM scene_fts WHERE rowid = old.id; END;
CREATE TABLE recording_vectors (
	recording_id INTEGER NOT NULL, 
	model VARCHAR(64) NOT NULL, 
	dim INTEGER NOT NULL, 
	scene_ids BLOB NOT NULL, 
	vectors BLOB NOT NULL, 
	CONSTRAINT pk_recording_vectors PRIMARY KEY (recording_id), 
	CONSTRAINT fk_recording_vectors_recording_id_recordings FOREIGN KEY(recording_id) REFERENCES recordings (id) ON DELETE CASCADE
);
CREATE INDEX ix_recording_vectors_model ON recording_vectors (model);
CREATE TABLE "annotations" (
	id INTEGER NOT NULL, 
	scene_id INTEGER NOT NULL, 
	analyser VARCHAR(64) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	position INTEGER NOT NULL, 
	text TEXT NOT NULL, 
	score FLOAT, 
	field VARCHAR(16), 
	data JSON, 
	terms TEXT, 
	CONSTRAINT pk_annotations PRIMARY KEY (id), 
	CONSTRAINT fk_annotations_scene_id_scenes FOREIGN KEY(scene_id) REFERENCES scenes (id) ON DELETE CASCADE, 
	CONSTRAINT ck_annotations_field CHECK (field IN ('text', 'labels', 'hidden'))
);
CREATE INDEX ix_annotations_scene_id ON annotations (scene_id);
CREATE VIRTUAL TABLE scene_fts USING fts5(text, labels, hidden, tokenize = 'porter unicode61 remove_diacritics 2');
CREATE TRIGGER annotations_fts_insert AFTER INSERT ON annotations WHEN new.field IS NOT NULL BEGIN
    DELETE FROM scene_fts WHERE rowid = new.scene_id;
    INSERT INTO scene_fts (rowid, text, labels, hidden) SELECT s.id, (SELECT group_concat(t, ' ') FROM (SELECT a.text || coalesce(' ' || a.terms, '') AS t FROM annotations a WHERE a.scene_id = s.id AND a.field = 'text' ORDER BY a.position, a.id)), (SELECT group_concat(t, ' ') FROM (SELECT a.text || coalesce(' ' || a.terms, '') AS t FROM annotations a WHERE a.scene_id = s.id AND a.field = 'labels' ORDER BY a.position, a.id)), (SELECT group_concat(t, ' ') FROM (SELECT a.text || coalesce(' ' || a.terms, '') AS t FROM annotations a WHERE a.scene_id = s.id AND a.field = 'hidden' ORDER BY a.position, a.id)) FROM scenes s WHERE s.id = new.scene_id AND EXISTS (SELECT 1 FROM annotations a WHERE a.scene_id = s.id AND a.field IN ('text', 'labels', 'hidden'));
END;
CREATE TRIGGER annotations_fts_delete AFTER DELETE ON annotations WHEN old.field IS NOT NULL BEGIN
    DELETE FROM scene_fts WHERE rowid = old.scene_id;
    INSERT INTO scene_fts (rowid, text, labels, hidden) SELECT s.id, (SELECT group_concat(t, ' ') FROM (SELECT a.text || coalesce(' ' || a.terms, '') AS t FROM annotations a WHERE a.scene_id = s.id AND a.field = 'text' ORDER BY a.position, a.id)), (SELECT group_concat(t, ' ') FROM (SELECT a.text || coalesce(' ' || a.terms, '') AS t FROM annotations a WHERE a.scene_id = s.id AND a.field = 'labels' ORDER BY a.position, a.id)), (SELECT group_concat(t, ' ') FROM (SELECT a.text || coalesce(' ' || a.terms, '') AS t FROM annotations a WHERE a.scene_id = s.id AND a.field = 'hidden' ORDER BY a.position, a.id)) FROM scenes s WHERE s.id = old.scene_id AND EXISTS (SELECT 1 FROM annotations a WHERE a.scene_id = s.id AND a.field IN ('text', 'labels', 'hidden'));
END;
CREATE TRIGGER annotations_fts_update AFTER UPDATE ON annotations WHEN old.field IS NOT NULL OR new.field IS NOT NULL BEGIN
    DELETE FROM scene_fts WHERE rowid = old.scene_id;
    INSERT INTO scene_fts (rowid, text, labels, hidden) SELECT s.id, (SELECT group_concat(t, ' ') FROM (SELECT a.text || coalesce(' ' || a.terms, '') AS t FROM annotations a WHERE a.scene_id = s.id AND a.field = 'text' ORDER BY a.position, a.id)), (SELECT group_concat(t, ' ') FROM (SELECT a.text || coalesce(' ' || a.terms, '') AS t FROM annotations a WHERE a.scene_id = s.id AND a.field = 'labels' ORDER BY a.position, a.id)), (SELECT group_concat(t, ' ') FROM (SELECT a.text || coalesce(' ' || a.terms, '') AS t FROM annotations a WHERE a.scene_id = s.id AND a.field = 'hidden' ORDER BY a.position, a.id)) FROM scenes s WHERE s.id = old.scene_id AND EXISTS (SELECT 1 FROM annotations a WHERE a.scene_id = s.id AND a.field IN ('text', 'labels', 'hidden'));
    DELETE FROM scene_fts WHERE rowid = new.scene_id;
    INSERT INTO scene_fts (rowid, text, labels, hidden) SELECT s.id, (SELECT group_concat(t, ' ') FROM (SELECT a.text || coalesce(' ' || a.terms, '') AS t FROM annotations a WHERE a.scene_id = s.id AND a.field = 'text' ORDER BY a.position, a.id)), (SELECT group_concat(t, ' ') FROM (SELECT a.text || coalesce(' ' || a.terms, '') AS t FROM annotations a WHERE a.scene_id = s.id AND a.field = 'labels' ORDER BY a.position, a.id)), (SELECT group_concat(t, ' ') FROM (SELECT a.text || coalesce(' ' || a.terms, '') AS t FROM annotations a WHERE a.scene_id = s.id AND a.field = 'hidden' ORDER BY a.position, a.id)) FROM scenes s WHERE s.id = new.scene_id AND EXISTS (SELECT 1 FROM annotations a WHERE a.scene_id = s.id AND a.field IN ('text', 'labels', 'hidden'));
END;
CREATE TABLE search_versions (
	name VARCHAR(32) NOT NULL, 
	version BIGINT NOT NULL, 
	CONSTRAINT pk_search_versions PRIMARY KEY (name)
);
CREATE TABLE search_changes (
	name VARCHAR(32) NOT NULL, 
	recording_id INTEGER NOT NULL, 
	version BIGINT NOT NULL, 
	CONSTRAINT pk_search_changes PRIMARY KEY (name, recording_id)
);
CREATE INDEX ix_search_changes_name_version ON search_changes (name, version);
CREATE TRIGGER annotations_text_version_insert AFTER INSERT ON annotations WHEN new.field IS NOT NULL BEGIN UPDATE search_versions SET version = version + 1 WHERE name = 'text'; INSERT INTO search_changes (name, recording_id, version) SELECT 'text', x.r, v.version FROM (SELECT recording_id AS r FROM scenes WHERE id = new.scene_id) x, search_versions v WHERE v.name = 'text' AND x.r IS NOT NULL ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER annotations_text_version_update AFTER UPDATE ON annotations WHEN old.field IS NOT NULL OR new.field IS NOT NULL BEGIN UPDATE search_versions SET version = version + 1 WHERE name = 'text'; INSERT INTO search_changes (name, recording_id, version) SELECT 'text', x.r, v.version FROM (SELECT recording_id AS r FROM scenes WHERE id = new.scene_id UNION SELECT recording_id AS r FROM scenes WHERE id = old.scene_id) x, search_versions v WHERE v.name = 'text' AND x.r IS NOT NULL ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER annotations_text_version_delete AFTER DELETE ON annotations WHEN old.field IS NOT NULL BEGIN UPDATE search_versions SET version = version + 1 WHERE name = 'text'; INSERT INTO search_changes (name, recording_id, version) SELECT 'text', x.r, v.version FROM (SELECT recording_id AS r FROM scenes WHERE id = old.scene_id) x, search_versions v WHERE v.name = 'text' AND x.r IS NOT NULL ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER scenes_text_version_update AFTER UPDATE OF start, recording_id ON scenes BEGIN UPDATE search_versions SET version = version + 1 WHERE name = 'text'; INSERT INTO search_changes (name, recording_id, version) SELECT 'text', x.r, v.version FROM (SELECT new.recording_id AS r UNION SELECT old.recording_id) x, search_versions v WHERE v.name = 'text' AND x.r IS NOT NULL ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER scenes_text_version_delete AFTER DELETE ON scenes BEGIN UPDATE search_versions SET version = version + 1 WHERE name = 'text'; INSERT INTO search_changes (name, recording_id, version) SELECT 'text', x.r, v.version FROM (SELECT old.recording_id AS r) x, search_versions v WHERE v.name = 'text' AND x.r IS NOT NULL ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER recordings_text_version_update AFTER UPDATE OF status, path ON recordings BEGIN UPDATE search_versions SET version = version + 1 WHERE name = 'text'; INSERT INTO search_changes (name, recording_id, version) SELECT 'text', x.r, v.version FROM (SELECT new.id AS r) x, search_versions v WHERE v.name = 'text' AND x.r IS NOT NULL ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER recordings_text_version_delete AFTER DELETE ON recordings BEGIN UPDATE search_versions SET version = version + 1 WHERE name = 'text'; INSERT INTO search_changes (name, recording_id, version) SELECT 'text', x.r, v.version FROM (SELECT old.id AS r) x, search_versions v WHERE v.name = 'text' AND x.r IS NOT NULL ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER recording_vectors_version_insert AFTER INSERT ON recording_vectors BEGIN UPDATE search_versions SET version = version + 1 WHERE name = 'vectors'; INSERT INTO search_changes (name, recording_id, version) SELECT 'vectors', x.r, v.version FROM (SELECT new.recording_id AS r) x, search_versions v WHERE v.name = 'vectors' AND x.r IS NOT NULL ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER recording_vectors_version_update AFTER UPDATE ON recording_vectors BEGIN UPDATE search_versions SET version = version + 1 WHERE name = 'vectors'; INSERT INTO search_changes (name, recording_id, version) SELECT 'vectors', x.r, v.version FROM (SELECT new.recording_id AS r UNION SELECT old.recording_id) x, search_versions v WHERE v.name = 'vectors' AND x.r IS NOT NULL ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER recording_vectors_version_delete AFTER DELETE ON recording_vectors BEGIN UPDATE search_versions SET version = version + 1 WHERE name = 'vectors'; INSERT INTO search_changes (name, recording_id, version) SELECT 'vectors', x.r, v.version FROM (SELECT old.recording_id AS r) x, search_versions v WHERE v.name = 'vectors' AND x.r IS NOT NULL ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER recordings_version_status AFTER UPDATE OF status ON recordings BEGIN UPDATE search_versions SET version = version + 1 WHERE name = 'vectors'; INSERT INTO search_changes (name, recording_id, version) SELECT 'vectors', x.r, v.version FROM (SELECT new.id AS r) x, search_versions v WHERE v.name = 'vectors' AND x.r IS NOT NULL ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER recordings_version_delete AFTER DELETE ON recordings BEGIN UPDATE search_versions SET version = version + 1 WHERE name = 'vectors'; INSERT INTO search_changes (name, recording_id, version) SELECT 'vectors', x.r, v.version FROM (SELECT old.id AS r) x, search_versions v WHERE v.name = 'vectors' AND x.r IS NOT NULL ON CONFLICT (name, recording_id) DO UPDATE SET version = excluded.version; END;
INSERT INTO alembic_version (version_num) VALUES ('0010');
INSERT INTO search_versions (name, version) VALUES ('text', abs(random()) % 281474976710656);
INSERT INTO search_versions (name, version) VALUES ('vectors', abs(random()) % 281474976710656);
INSERT INTO search_changes (name, recording_id, version) SELECT name, -1, version FROM search_versions;
