"""learning loop: model_versions and interactions tables; project settings and active version; case split, score
and embedding; jobs without a case (training) and with a detail; the model version that proposed each version

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

FK_PROPOSED_BY = 'fk_annotation_versions_model_version_id'


def upgrade() -> None:
    op.create_table('interactions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('session', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('positive', sa.Boolean(), nullable=False),
    sa.Column('coords', sa.JSON(), nullable=False),
    sa.Column('label', sa.Integer(), nullable=False),
    sa.Column('engine', sa.String(length=500), nullable=False),
    sa.Column('undone', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('voxels', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'session', 'seq', name='uq_interaction_seq')
    )
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_interactions_case_id'), ['case_id'], unique=False)

    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('bundle_dir', sa.String(length=500), nullable=False),
    sa.Column('bundle_sha256', sa.String(length=64), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('parent_model', sa.String(length=500), nullable=True),
    sa.Column('train_cases', sa.JSON(), nullable=False),
    sa.Column('val_cases', sa.JSON(), nullable=False),
    sa.Column('cases_sha256', sa.String(length=64), nullable=False),
    sa.Column('label_values', sa.JSON(), nullable=False),
    sa.Column('recipe', sa.JSON(), nullable=False),
    sa.Column('gate', sa.JSON(), nullable=False),
    sa.Column('trigger', sa.String(length=200), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('activated', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id'),
    sa.UniqueConstraint('project_id', 'number', name='uq_model_version_number')
    )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_versions_project_id'), ['project_id'], unique=False)

    # SQLite rebuilds these two tables (a new constraint, a column made nullable): Database.migrate runs
    # migrations with foreign keys off there, so the rebuild does not fire ON DELETE actions of the rows referencing them
    with op.batch_alter_table('annotation_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model_version_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(FK_PROPOSED_BY, 'model_versions', ['model_version_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('detail', sa.JSON(), nullable=True))
        batch_op.alter_column('case_id', existing_type=sa.INTEGER(), nullable=True)

    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('split', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('score', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('embedding', sa.JSON(), nullable=True))

    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('settings', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('active_version_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('active_version_id')
        batch_op.drop_column('settings')

    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('embedding')
        batch_op.drop_column('score')
        batch_op.drop_column('split')

    op.execute(sa.text("DELETE FROM jobs WHERE case_id IS NULL"))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('case_id', existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column('detail')

    with op.batch_alter_table('annotation_versions', schema=None) as batch_op:
        batch_op.drop_constraint(FK_PROPOSED_BY, type_='foreignkey')
        batch_op.drop_column('model_version_id')

    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_versions_project_id'))
    op.drop_table('model_versions')

    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_interactions_case_id'))
    op.drop_table('interactions')
